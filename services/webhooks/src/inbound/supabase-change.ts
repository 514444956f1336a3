import { parseTimestamp, type SchemaCatalog, type TypeRegistry } from '@sluice/db';
import { type Column, type Row, type Value, webhooks } from '@sluice/proto';
import { isJsonObject, isRawNumber, parseExactJson } from './exact-json';

/**
 * Supabase database-webhook payloads ({type, table, schema, record, old_record}, as pg_net sends
 * them: record values are to_jsonb of the row) turned into typed changes of the schema catalog's
 * tables. Values become the same wire `Value`s the data service answers with for that column
 * (decodeValue in @sluice/db): int8 as int_value, numeric as decimal_value with its digits,
 * timestamps as timestamp_value, json as json_text, bytea as bytes_value, arrays as list_value.
 * Numbers are read from their source text, so nothing passes through a lossy double.
 *
 * The ingress refuses (422) what does not fit when the event arrives; consumers type the stored
 * body again with `typedChange` when they deliver it (the catalog may have moved on since: then
 * it throws the same way).
 */

/** A payload that does not fit the catalog; `field` names where ("table", "record.amount", "old_record.tags[2]"). */
export class ChangeMisfit extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
    this.name = 'ChangeMisfit';
  }
}

export type ChangeOperationName = 'INSERT' | 'UPDATE' | 'DELETE';

/** What the inbox stores in `change` for a supabase-database event. */
export interface StoredChange {
  readonly operation: ChangeOperationName;
  readonly schema: string;
  readonly table: string;
}

const OPERATIONS: Readonly<Record<ChangeOperationName, webhooks.Operation>> = {
  INSERT: webhooks.Operation.OPERATION_INSERT,
  UPDATE: webhooks.Operation.OPERATION_UPDATE,
  DELETE: webhooks.Operation.OPERATION_DELETE,
};

/**
 * The typed change of a stored supabase-database body (the inbox row's `body`, exactly as
 * received). `columns` are the table's columns present in `record` or `old_record`, in the
 * table's order; each Row has one value per column (SQL NULL when the payload has none);
 * `oldRecord` is undefined when the payload's old_record is null or absent.
 *
 * @throws ChangeMisfit when the body is not JSON or does not fit `catalog` (field "" for the body itself).
 */
export function typedChange(catalog: SchemaCatalog, body: Buffer | string): webhooks.TypedChange {
  let payload: unknown;
  try {
    payload = parseExactJson(typeof body === 'string' ? body : body.toString('utf8'));
  } catch {
    throw new ChangeMisfit('', 'the body is not JSON');
  }
  return readSupabaseChange(catalog, payload);
}

/**
 * Validates a payload parsed with parseExactJson against `catalog` and types it.
 *
 * @throws ChangeMisfit naming the first field that does not fit.
 */
export function readSupabaseChange(catalog: SchemaCatalog, payload: unknown): webhooks.TypedChange {
  if (!isJsonObject(payload)) throw new ChangeMisfit('', 'the body must be a JSON object');
  const type = payload.type;
  if (type !== 'INSERT' && type !== 'UPDATE' && type !== 'DELETE')
    throw new ChangeMisfit('type', 'type must be "INSERT", "UPDATE" or "DELETE"');
  const schema = payload.schema;
  if (typeof schema !== 'string' || schema === '')
    throw new ChangeMisfit('schema', 'schema must be a string');
  const tableName = payload.table;
  if (typeof tableName !== 'string' || tableName === '')
    throw new ChangeMisfit('table', 'table must be a string');
  const table = catalog.table(schema, tableName);
  if (!table)
    throw new ChangeMisfit('table', `there is no table ${schema}.${tableName} in the schema catalog`);

  const record = recordOf(payload, 'record', type !== 'DELETE');
  const oldRecord = recordOf(payload, 'old_record', type === 'DELETE');
  if (type === 'INSERT' && oldRecord) throw new ChangeMisfit('old_record', 'an INSERT has no old_record');
  if (type === 'DELETE' && record) throw new ChangeMisfit('record', 'a DELETE has no record');

  for (const [name, row] of [
    ['record', record],
    ['old_record', oldRecord],
  ] as const) {
    if (!row) continue;
    for (const key of Object.keys(row))
      if (!table.columnsByName.has(key))
        throw new ChangeMisfit(`${name}.${key}`, `${schema}.${tableName} has no column "${key}"`);
  }
  const columns = table.columns.filter(
    (c) => (record && Object.hasOwn(record, c.name)) || (oldRecord && Object.hasOwn(oldRecord, c.name)),
  );
  const types = catalog.types;
  const typedRow = (name: string, row: Record<string, unknown>): Row => ({
    values: columns.map((c) => {
      const field = `${name}.${c.name}`;
      // Own keys only: a column named "constructor" must not read Object.prototype's.
      const present = Object.hasOwn(row, c.name);
      const value = present ? row[c.name] : undefined;
      if (present && value === null && !c.nullable && !table.isView)
        throw new ChangeMisfit(field, `is null but ${schema}.${tableName}.${c.name} is NOT NULL`);
      return toValue(value, c.typeOid, types, field);
    }),
  });
  return {
    operation: OPERATIONS[type],
    schema,
    table: tableName,
    columns: columns.map((c): Column => ({ name: c.name, type: types.name(c.typeOid) })),
    record: record ? typedRow('record', record) : undefined,
    oldRecord: oldRecord ? typedRow('old_record', oldRecord) : undefined,
  };
}

/** What the inbox stores in `change` for a validated change. */
export function storedChange(change: webhooks.TypedChange): StoredChange {
  const operation = (Object.keys(OPERATIONS) as ChangeOperationName[]).find(
    (k) => OPERATIONS[k] === change.operation,
  );
  return { operation: operation ?? 'INSERT', schema: change.schema, table: change.table };
}

function recordOf(
  payload: Record<string, unknown>,
  name: 'record' | 'old_record',
  required: boolean,
): Record<string, unknown> | undefined {
  const value = payload[name];
  if (value === null || value === undefined) {
    if (required) throw new ChangeMisfit(name, `${name} must be an object for a ${String(payload.type)}`);
    return undefined;
  }
  if (!isJsonObject(value)) throw new ChangeMisfit(name, `${name} must be an object or null`);
  return value;
}

const NULL: Value = { kind: undefined };

const INT_RANGES: Readonly<Record<string, readonly [bigint, bigint]>> = {
  int2: [-32_768n, 32_767n],
  int4: [-2_147_483_648n, 2_147_483_647n],
  int8: [-9_223_372_036_854_775_808n, 9_223_372_036_854_775_807n],
  oid: [0n, 4_294_967_295n],
};
const INTEGER = /^-?\d+$/;
const UUID = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;
const DATE = /^(\d{4,})-(\d\d)-(\d\d)( BC)?$/;
const TIMESTAMP =
  /^(\d{4,})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(\.\d{1,6})?(Z|[+-]\d\d(?::?\d\d(?::?\d\d)?)?)?( BC)?$/;
// PostgreSQL's timestamp range in Unix seconds (4714-11-24 BC to 294276-12-31), as wire-values.ts checks it.
const MIN_TIMESTAMP_SECONDS = -210_866_803_200n;
const MAX_TIMESTAMP_SECONDS = 9_224_318_015_999n;
const SPECIAL_FLOATS = new Set(['NaN', 'Infinity', '-Infinity']);

function daysInMonth(year: number, month: number): number {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

function validDate(year: string, month: string, day: string, bc: boolean): boolean {
  const y = bc ? 1 - Number(year) : Number(year);
  const m = Number(month);
  const d = Number(day);
  return Number(year) > 0 && m >= 1 && m <= 12 && d >= 1 && d <= daysInMonth(y, m);
}

/**
 * One JSON value of a payload as the wire Value of a column of type `oid`: the Value decodeValue
 * gives for the same PostgreSQL value.
 */
function toValue(json: unknown, oid: number, types: TypeRegistry, field: string): Value {
  if (json === null || json === undefined) return NULL;
  const typeName = types.name(oid);
  const misfit = (what: string) => new ChangeMisfit(field, `${what} is not a valid ${typeName} value`);
  const describe = () =>
    isRawNumber(json)
      ? `the number ${json.rawJSON.slice(0, 40)}`
      : typeof json === 'string'
        ? `"${json.slice(0, 40)}"`
        : Array.isArray(json)
          ? 'an array'
          : typeof json === 'object'
            ? 'an object'
            : String(json);
  const base = types.base(oid);
  switch (types.kind(oid)) {
    case 'bool':
      if (typeof json === 'boolean') return { kind: { $case: 'boolValue', value: json } };
      throw misfit(describe());
    case 'int': {
      if (!isRawNumber(json) || !INTEGER.test(json.rawJSON)) throw misfit(describe());
      const value = BigInt(json.rawJSON);
      const range = INT_RANGES[base?.name ?? 'int8'] ?? INT_RANGES.int8;
      if (range && (value < range[0] || value > range[1]))
        throw new ChangeMisfit(field, `${json.rawJSON} is out of range for ${typeName}`);
      return { kind: { $case: 'intValue', value } };
    }
    case 'float':
      if (isRawNumber(json)) return { kind: { $case: 'doubleValue', value: Number(json.rawJSON) } };
      if (typeof json === 'string' && SPECIAL_FLOATS.has(json))
        return { kind: { $case: 'doubleValue', value: Number(json) } };
      throw misfit(describe());
    case 'numeric':
      if (isRawNumber(json)) return { kind: { $case: 'decimalValue', value: numericText(json.rawJSON) } };
      if (typeof json === 'string' && SPECIAL_FLOATS.has(json))
        return { kind: { $case: 'decimalValue', value: json } };
      throw misfit(describe());
    case 'timestamptz':
    case 'timestamp': {
      if (typeof json !== 'string') throw misfit(describe());
      if (json === 'infinity' || json === '-infinity') return { kind: { $case: 'stringValue', value: json } };
      const m = TIMESTAMP.exec(json);
      if (
        !m ||
        !validDate(m[1] as string, m[2] as string, m[3] as string, m[9] !== undefined) ||
        Number(m[4]) > 23 ||
        Number(m[5]) > 59 ||
        Number(m[6]) > 59
      )
        throw misfit(describe());
      // timestamp without time zone ignores an offset, as PostgreSQL's input does.
      const zone = types.kind(oid) === 'timestamp' || m[8] === undefined || m[8] === 'Z' ? '+00' : m[8];
      const text = `${m[1]}-${m[2]}-${m[3]} ${m[4]}:${m[5]}:${m[6]}${m[7] ?? ''}${zone}${m[9] ?? ''}`;
      const ts = parseTimestamp(text);
      if (!ts || ts.seconds < MIN_TIMESTAMP_SECONDS || ts.seconds > MAX_TIMESTAMP_SECONDS)
        throw misfit(describe());
      return { kind: { $case: 'timestampValue', value: ts } };
    }
    case 'json':
      // As PostgreSQL prints it: jsonb in its canonical form; json as compact text (its
      // original spacing did not survive to_jsonb anyway). Numbers keep their source text.
      return {
        kind: { $case: 'jsonText', value: base?.name === 'jsonb' ? jsonbText(json) : JSON.stringify(json) },
      };
    case 'bytea':
      if (typeof json === 'string' && /^\\x([\da-fA-F]{2})*$/.test(json))
        return { kind: { $case: 'bytesValue', value: Buffer.from(json.slice(2), 'hex') } };
      throw misfit(describe());
    case 'array': {
      if (!Array.isArray(json)) throw misfit(describe());
      const elementOid = base?.elementOid ?? 0;
      return {
        kind: {
          $case: 'listValue',
          value: {
            values: json.map((item, i) =>
              Array.isArray(item)
                ? toValue(item, oid, types, `${field}[${i}]`)
                : toValue(item, elementOid, types, `${field}[${i}]`),
            ),
          },
        },
      };
    }
    default: {
      if (typeof json !== 'string') throw misfit(describe());
      if (json.includes('\u0000')) throw new ChangeMisfit(field, `text cannot contain NUL (${typeName})`);
      const name = base?.name;
      if (base && base.enumValues.length > 0 && !base.enumValues.includes(json)) throw misfit(describe());
      if (name === 'uuid' && !UUID.test(json)) throw misfit(describe());
      if (name === 'date' && json !== 'infinity' && json !== '-infinity') {
        const d = DATE.exec(json);
        if (!d || !validDate(d[1] as string, d[2] as string, d[3] as string, d[4] !== undefined))
          throw misfit(describe());
      }
      // decodeValue gives PostgreSQL's own text: uuids in lower case with dashes.
      if (name === 'uuid') {
        const hex = json.replaceAll('-', '').toLowerCase();
        return {
          kind: {
            $case: 'stringValue',
            value: `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`,
          },
        };
      }
      return { kind: { $case: 'stringValue', value: json } };
    }
  }
}

/**
 * JSON text as PostgreSQL prints a jsonb: object keys shortest first, then by their bytes, the
 * last of duplicate keys kept, ", " and ": " between items.
 */
function jsonbText(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(jsonbText).join(', ')}]`;
  if (isJsonObject(value)) {
    const keys = Object.keys(value).sort((a, b) => {
      const ab = Buffer.from(a);
      const bb = Buffer.from(b);
      return ab.length - bb.length || Buffer.compare(ab, bb);
    });
    return `{${keys.map((k) => `${JSON.stringify(k)}: ${jsonbText(value[k])}`).join(', ')}}`;
  }
  // jsonb holds numbers as numeric and prints them so.
  if (isRawNumber(value)) return numericText(value.rawJSON);
  return JSON.stringify(value);
}

const JSON_NUMBER = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/;

/**
 * A JSON number as PostgreSQL's numeric prints it: no exponent (1.5e3 is 1500, 1.50e1 is
 * 15.0: the scale is the fraction's digits less the exponent), no negative zero.
 */
export function numericText(text: string): string {
  const m = JSON_NUMBER.exec(text);
  if (!m) return text;
  const [, sign, int = '', frac = '', exp] = m;
  const e = exp === undefined ? 0 : Number(exp);
  if (!Number.isSafeInteger(e) || Math.abs(e) > 100_000) return text;
  const digits = `${int}${frac}`;
  const scale = Math.max(0, frac.length - e);
  // The decimal point sits `point` digits into `digits` (may be outside it).
  const point = int.length + e;
  let whole: string;
  let fraction: string;
  if (point <= 0) {
    whole = '0';
    fraction = `${'0'.repeat(-point)}${digits}`;
  } else if (point >= digits.length) {
    whole = `${digits}${'0'.repeat(point - digits.length)}`;
    fraction = '';
  } else {
    whole = digits.slice(0, point);
    fraction = digits.slice(point);
  }
  whole = whole.replace(/^0+(?=\d)/, '');
  fraction = fraction.slice(0, scale).padEnd(scale, '0');
  const zero = /^0*$/.test(whole + fraction);
  return `${sign && !zero ? '-' : ''}${whole}${scale > 0 ? `.${fraction}` : ''}`;
}
