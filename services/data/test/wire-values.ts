import { type Filter, Operator, type ResultSet, type Row, type Value } from '@sluice/proto';
import type { DataClient } from './helpers';

/** Builders for wire values, so tests read like the data they send. */
export const V = {
  null: (): Value => ({ kind: undefined }),
  int: (n: bigint | number): Value => ({ kind: { $case: 'intValue', value: BigInt(n) } }),
  double: (n: number): Value => ({ kind: { $case: 'doubleValue', value: n } }),
  decimal: (s: string): Value => ({ kind: { $case: 'decimalValue', value: s } }),
  str: (s: string): Value => ({ kind: { $case: 'stringValue', value: s } }),
  bool: (b: boolean): Value => ({ kind: { $case: 'boolValue', value: b } }),
  bytes: (b: Uint8Array): Value => ({ kind: { $case: 'bytesValue', value: Buffer.from(b) } }),
  ts: (seconds: bigint, nanos = 0): Value => ({
    kind: { $case: 'timestampValue', value: { seconds, nanos } },
  }),
  /** A JS value as JSON text (`json_text`). */
  json: (j: unknown): Value => ({ kind: { $case: 'jsonText', value: JSON.stringify(j) } }),
  /** JSON text sent as is. */
  jsonText: (text: string): Value => ({ kind: { $case: 'jsonText', value: text } }),
  /** JSON as a google.protobuf.Value (`json_value`). */
  jsonValue: (j: unknown): Value => ({ kind: { $case: 'jsonValue', value: j } }),
  list: (values: Value[]): Value => ({ kind: { $case: 'listValue', value: { values } } }),
};

export const row = (...values: Value[]): Row => ({ values });

/** A plain JS form of a wire value: bigint, number, string, boolean, Buffer, Timestamp, JSON, arrays, null. */
export function plain(v: Value | undefined): unknown {
  const kind = v?.kind;
  if (!kind || kind.$case === 'nullValue') return null;
  if (kind.$case === 'listValue') return kind.value.values.map(plain);
  return kind.value;
}

/** The rows of a result set as objects keyed by column name, with plain values. */
export function records(result: ResultSet | undefined): Record<string, unknown>[] {
  const columns = result?.columns.map((c) => c.name) ?? [];
  return (result?.rows ?? []).map((r) => Object.fromEntries(columns.map((c, i) => [c, plain(r.values[i])])));
}

export function cond(column: string, op: Operator, value?: Value, values: Value[] = []): Filter {
  return { kind: { $case: 'condition', value: { column, op, value, values, textSearchConfig: '' } } };
}

export const eq = (column: string, value: Value): Filter => cond(column, Operator.OPERATOR_EQ, value);
export const and = (...filters: Filter[]): Filter => ({ kind: { $case: 'and', value: { filters } } });

/** Request shapes as the client takes them (every field optional, nested too). */
export type SelectReq = NonNullable<Parameters<DataClient['select']>[0]>;
export type OperationReq = NonNullable<
  NonNullable<Parameters<DataClient['transaction']>[0]>['operations']
>[number];
