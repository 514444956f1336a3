import type { ResultSet, Timestamp, Value } from '@sluice/proto';

/** Builders for typed wire values, so client code reads `v.int(42n)` rather than nested oneofs. */
export const v = {
  null: (): Value => ({ kind: undefined }),
  bool: (value: boolean): Value => ({ kind: { $case: 'boolValue', value } }),
  int: (value: bigint | number): Value => ({ kind: { $case: 'intValue', value: BigInt(value) } }),
  double: (value: number): Value => ({ kind: { $case: 'doubleValue', value } }),
  decimal: (value: string): Value => ({ kind: { $case: 'decimalValue', value } }),
  string: (value: string): Value => ({ kind: { $case: 'stringValue', value } }),
  timestamp: (value: Date | Timestamp): Value => ({
    kind: {
      $case: 'timestampValue',
      value:
        value instanceof Date
          ? {
              seconds: BigInt(Math.floor(value.getTime() / 1000)),
              nanos: (value.getTime() % 1000) * 1_000_000,
            }
          : value,
    },
  }),
  json: (value: unknown): Value => ({ kind: { $case: 'jsonValue', value } }),
  bytes: (value: Uint8Array): Value => ({ kind: { $case: 'bytesValue', value: Buffer.from(value) } }),
  list: (values: Value[]): Value => ({ kind: { $case: 'listValue', value: { values } } }),
};

/**
 * A wire value as a plain JS value: int64 as bigint, numeric as a decimal string, timestamps as
 * `{ seconds, nanos }` (a Date would drop microseconds), json as parsed JSON, bytea as Buffer.
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
