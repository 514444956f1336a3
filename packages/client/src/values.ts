import type { ResultSet, Timestamp, Value } from '@sluice/proto';

/** Builders for typed wire values, so client code reads `v.int(42n)` rather than nested oneofs. */
export const v = {
  null: (): Value => ({ kind: undefined }),
  bool: (value: boolean): Value => ({ kind: { $case: 'boolValue', value } }),
  int: (value: bigint | number): Value => ({ kind: { $case: 'intValue', value: BigInt(value) } }),
  double: (value: number): Value => ({ kind: { $case: 'doubleValue', value } }),
  decimal: (value: string): Value => ({ kind: { $case: 'decimalValue', value } }),
  string: (value: string): Value => ({ kind: { $case: 'stringValue', value } }),
  /**
   * A Date (milliseconds) or a wire Timestamp. The server takes PostgreSQL's whole range
   * (4714 BC to 294276 AD) and nanos 0..999,999,999, rounded to microseconds.
   */
  timestamp: (value: Date | Timestamp): Value => ({
    kind: { $case: 'timestampValue', value: value instanceof Date ? fromDate(value) : value },
  }),
  /**
   * A JS value as JSON text for a json/jsonb column: `v.json(null)` is JSON null, unlike
   * `v.null()` (SQL NULL). Bigints must be converted first (JSON.stringify refuses them).
   *
   * @throws TypeError for what JSON cannot say (undefined, NaN, infinities) rather than writing
   *   something else.
   */
  json: (value: unknown): Value => ({ kind: { $case: 'jsonText', value: jsonText(value) } }),
  /** JSON text sent as is (keeps every digit of large numbers, key order for json columns). */
  jsonText: (text: string): Value => ({ kind: { $case: 'jsonText', value: text } }),
  bytes: (value: Uint8Array): Value => ({ kind: { $case: 'bytesValue', value: Buffer.from(value) } }),
  list: (values: Value[]): Value => ({ kind: { $case: 'listValue', value: { values } } }),
};

function fromDate(date: Date): Timestamp {
  const ms = date.getTime();
  if (!Number.isFinite(ms)) throw new TypeError('v.timestamp: invalid Date');
  // Floor division: nanos count forward from the second, also before 1970.
  const seconds = Math.floor(ms / 1000);
  return { seconds: BigInt(seconds), nanos: (ms - seconds * 1000) * 1_000_000 };
}

function jsonText(value: unknown): string {
  const text = JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v === 'number' && !Number.isFinite(v))
      throw new TypeError(`v.json: ${v} is not a JSON number`);
    return v;
  });
  if (text === undefined) throw new TypeError(`v.json: ${typeof value} is not JSON`);
  return text;
}

/**
 * A wire value as a plain JS value: int64 as bigint, numeric as a decimal string, timestamps as
 * `{ seconds, nanos }` (a Date would drop microseconds), json as its JSON text (so JSON null is
 * `'null'`, not `null`, and large numbers keep their digits: JSON.parse it when that suits),
 * bytea as Buffer, SQL NULL as null.
 */
export function fromValue(value: Value | undefined): unknown {
  const kind = value?.kind;
  if (!kind || kind.$case === 'nullValue') return null;
  if (kind.$case === 'listValue') return kind.value.values.map(fromValue);
  return kind.value;
}

/** Rows of a result as objects keyed by column name. */
export function toObjects(result: ResultSet | undefined): Record<string, unknown>[] {
  if (!result) return [];
  return result.rows.map((row) =>
    Object.fromEntries(result.columns.map((c, i) => [c.name, fromValue(row.values[i])])),
  );
}
