import { SluiceError } from '@sluice/core';
import type { Timestamp, Value } from '@sluice/proto';
import { parse as parseArray } from 'postgres-array';
import type { TypeRegistry } from './pg-types';

/**
 * Conversion between PostgreSQL's text format and Sluice's typed wire values. Pools created by
 * this package return every column as raw text (no pg type parsers run), in a session with
 * TimeZone=UTC, DateStyle=ISO and IntervalStyle=iso_8601, so int8 and numeric never pass through
 * a JS number and timestamps keep their microseconds.
 */

/** A value ready to be a query parameter: text, NULL, or an array of those (pg formats arrays). */
export type PgParam = string | null | PgParam[];

const NULL: Value = { kind: undefined };

/** Decodes one result cell (`null` is SQL NULL) of the type with OID `oid`. */
export function decodeValue(text: string | null, oid: number, types: TypeRegistry): Value {
  if (text === null) return NULL;
  switch (types.kind(oid)) {
    case 'bool':
      return { kind: { $case: 'boolValue', value: text === 't' } };
    case 'int':
      return { kind: { $case: 'intValue', value: BigInt(text) } };
    case 'float':
      return { kind: { $case: 'doubleValue', value: Number(text) } };
    case 'numeric':
      return { kind: { $case: 'decimalValue', value: text } };
    case 'timestamptz':
    case 'timestamp': {
      const ts = parseTimestamp(text);
      return ts
        ? { kind: { $case: 'timestampValue', value: ts } }
        : { kind: { $case: 'stringValue', value: text } }; // 'infinity' and '-infinity'
    }
    case 'json':
      // PostgreSQL's own text: JSON null stays "null" (not SQL NULL), numbers keep their digits,
      // json keeps key order and duplicates.
      return { kind: { $case: 'jsonText', value: text } };
    case 'bytea':
      return { kind: { $case: 'bytesValue', value: Buffer.from(text.slice(2), 'hex') } };
    case 'array': {
      const elementOid = types.base(oid)?.elementOid ?? 0;
      return decodeArray(parseArray(text, (element) => element) as NestedText, elementOid, types);
    }
    default:
      return { kind: { $case: 'stringValue', value: text } };
  }
}

type NestedText = (string | null | NestedText)[];

function decodeArray(items: NestedText, elementOid: number, types: TypeRegistry): Value {
  return {
    kind: {
      $case: 'listValue',
      value: {
        values: items.map((item) =>
          Array.isArray(item) ? decodeArray(item, elementOid, types) : decodeValue(item, elementOid, types),
        ),
      },
    },
  };
}

const TIMESTAMP_RE =
  /^(\d{4,})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(?:([+-])(\d\d)(?::?(\d\d))?(?::?(\d\d))?)?( BC)?$/;

/**
 * PostgreSQL's timestamp range in Unix seconds: 4714-11-24 00:00:00 BC up to
 * 294276-12-31 23:59:59.999999 (both ends included, UTC).
 */
export const MIN_TIMESTAMP_SECONDS = -210_866_803_200n;
export const MAX_TIMESTAMP_SECONDS = 9_224_318_015_999n;
const NANOS_PER_SECOND = 1_000_000_000n;
const DAY_SECONDS = 86_400n;

/** Days since 1970-01-01 of a proleptic Gregorian date (`year` astronomical: 1 BC is 0). */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146_097 + doe - 719_468;
}

/** The proleptic Gregorian date of a day count since 1970-01-01 (inverse of daysFromCivil). */
function civilFromDays(days: number): { year: number; month: number; day: number } {
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor(
    (doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365,
  );
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  return { year: yoe + era * 400 + (month <= 2 ? 1 : 0), month, day };
}

/**
 * Parses PostgreSQL's ISO timestamp output (any year it stores, BC included) into a wire
 * Timestamp; undefined for 'infinity', '-infinity' or anything unexpected.
 */
export function parseTimestamp(text: string): Timestamp | undefined {
  const m = TIMESTAMP_RE.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, frac, sign, oh, om, os, bc] = m;
  const year = bc ? 1 - Number(y) : Number(y);
  const days = daysFromCivil(year, Number(mo), Number(d));
  let seconds = BigInt(days) * DAY_SECONDS + BigInt(Number(h) * 3600 + Number(mi) * 60 + Number(s));
  if (sign) {
    const offset = Number(oh) * 3600 + Number(om ?? 0) * 60 + Number(os ?? 0);
    seconds -= BigInt(sign === '+' ? offset : -offset);
  }
  const micros = frac ? Number(frac.padEnd(6, '0')) : 0;
  return { seconds, nanos: micros * 1000 };
}

/**
 * Why a wire Timestamp cannot be stored, or undefined when it can: nanos must be
 * 0..999,999,999 and the instant (after PostgreSQL rounds it to microseconds) within
 * PostgreSQL's range.
 */
export function timestampProblem(ts: Timestamp): string | undefined {
  if (!Number.isInteger(ts.nanos) || ts.nanos < 0 || ts.nanos > 999_999_999) {
    return `nanos ${ts.nanos} is outside 0..999999999`;
  }
  const total = BigInt(ts.seconds) * NANOS_PER_SECOND + BigInt(ts.nanos);
  // Anything from half a microsecond before the end rounds up past it.
  const end = (MAX_TIMESTAMP_SECONDS + 1n) * NANOS_PER_SECOND - 500n;
  if (total < MIN_TIMESTAMP_SECONDS * NANOS_PER_SECOND || total >= end) {
    return `seconds ${ts.seconds} is outside PostgreSQL's timestamp range (${MIN_TIMESTAMP_SECONDS}..${MAX_TIMESTAMP_SECONDS}, 4714 BC to 294276 AD)`;
  }
  return undefined;
}

function civilText(days: number): { date: string; bc: boolean } {
  const { year, month, day } = civilFromDays(days);
  const bc = year <= 0;
  const y = String(bc ? 1 - year : year).padStart(4, '0');
  return { date: `${y}-${String(month).padStart(2, '0')}-${String(day).padStart(2, '0')}`, bc };
}

/**
 * Formats a wire Timestamp as PostgreSQL input in UTC with all nine digits of nanoseconds
 * (PostgreSQL rounds to microseconds), e.g. `2024-01-02T03:04:05.123456789Z`,
 * `12345-01-01T00:00:00.000000000Z`, `0044-03-15T12:00:00.000000000Z BC`. Check the value with
 * `timestampProblem` first: this does not.
 */
export function formatTimestamp(ts: Timestamp): string {
  const seconds = BigInt(ts.seconds);
  let days = seconds / DAY_SECONDS;
  let rest = seconds % DAY_SECONDS;
  if (rest < 0n) {
    rest += DAY_SECONDS;
    days -= 1n;
  }
  const { date, bc } = civilText(Number(days));
  const r = Number(rest);
  const time = [Math.floor(r / 3600), Math.floor((r % 3600) / 60), r % 60]
    .map((n) => String(n).padStart(2, '0'))
    .join(':');
  return `${date}T${time}.${String(ts.nanos).padStart(9, '0')}Z${bc ? ' BC' : ''}`;
}

/** The UTC date of a wire Timestamp as PostgreSQL date input, e.g. `2024-01-02`, `0001-01-01 BC`. */
function formatDate(ts: Timestamp): string {
  const seconds = BigInt(ts.seconds);
  let days = seconds / DAY_SECONDS;
  if (seconds % DAY_SECONDS < 0n) days -= 1n;
  const { date, bc } = civilText(Number(days));
  return bc ? `${date} BC` : date;
}

function wrongType(field: string, typeName: string, got: string): SluiceError {
  const description = `${got} is not a valid value for a column of type ${typeName}`;
  return new SluiceError('INVALID_ARGUMENT', description, {
    reason: 'SLUICE_WRONG_TYPE',
    violations: [{ field, description }],
  });
}

function invalidValue(field: string, typeName: string, why: string): SluiceError {
  const description = `Not a valid ${typeName} value: ${why}`;
  return new SluiceError('INVALID_ARGUMENT', description, {
    reason: 'SLUICE_INVALID_VALUE',
    violations: [{ field, description }],
  });
}

function checkedTimestamp(ts: Timestamp, field: string, typeName: string): Timestamp {
  const problem = timestampProblem(ts);
  if (problem) throw invalidValue(field, typeName, problem);
  return ts;
}

/**
 * The JSON text of a google.protobuf.Value as ts-proto decodes it (plain JS: null, boolean,
 * number, string, array, object). Refuses what JSON cannot say instead of changing it silently:
 * NaN and infinities (JSON.stringify would write null) and Values with no kind (it would drop
 * the key).
 */
function jsonValueText(value: unknown, field: string, typeName: string): string {
  const check = (v: unknown, path: string): void => {
    if (v === null || typeof v === 'string' || typeof v === 'boolean') return;
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) throw invalidValue(field, typeName, `${v} at ${path} is not a JSON number`);
      return;
    }
    if (Array.isArray(v)) {
      for (const [i, item] of v.entries()) check(item, `${path}[${i}]`);
      return;
    }
    if (typeof v === 'object') {
      for (const [k, item] of Object.entries(v)) check(item, `${path}.${k}`);
      return;
    }
    throw invalidValue(field, typeName, `a google.protobuf.Value with no kind at ${path}`);
  };
  check(value, '$');
  return JSON.stringify(value);
}

const DECIMAL_RE = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$|^[+-]?(NaN|Infinity)$/;

/**
 * Encodes a wire value as a parameter for a column or argument of type `oid`.
 *
 * @throws SluiceError INVALID_ARGUMENT (SLUICE_WRONG_TYPE) when the value's kind cannot stand for
 *   that type, and (SLUICE_INVALID_VALUE) for content that would otherwise be refused without a
 *   field or changed on the way: a timestamp outside PostgreSQL's range or with nanos outside
 *   0..999,999,999, JSON text that does not parse, a json_value with NaN, an infinity or an empty
 *   Value; both name `field`. Other bad content of the right kind (an int beyond int4, a
 *   malformed uuid) is left for PostgreSQL to reject, which maps to INVALID_ARGUMENT too.
 */
export function encodeValue(
  value: Value | undefined,
  oid: number,
  types: TypeRegistry,
  field: string,
): PgParam {
  const kind = value?.kind;
  if (kind === undefined || kind.$case === 'nullValue') return null;
  const typeKind = types.kind(oid);
  const typeName = types.name(oid);
  const fail = () => wrongType(field, typeName, kind.$case);
  switch (typeKind) {
    case 'bool':
      if (kind.$case === 'boolValue') return kind.value ? 'true' : 'false';
      if (kind.$case === 'stringValue') return kind.value;
      throw fail();
    case 'int':
    case 'float':
    case 'numeric':
      if (kind.$case === 'intValue') return kind.value.toString();
      if (kind.$case === 'doubleValue') {
        if (typeKind === 'int' && !Number.isInteger(kind.value)) throw fail();
        // NaN, Infinity and -Infinity are PostgreSQL's spellings too; String(-0) would drop the sign.
        return Object.is(kind.value, -0) ? '-0' : String(kind.value);
      }
      if (kind.$case === 'decimalValue') {
        if (!DECIMAL_RE.test(kind.value)) {
          throw wrongType(field, typeName, `"${kind.value.slice(0, 40)}" (not a decimal number)`);
        }
        return kind.value;
      }
      if (kind.$case === 'stringValue') return kind.value;
      throw fail();
    case 'timestamptz':
    case 'timestamp':
      if (kind.$case === 'timestampValue')
        return formatTimestamp(checkedTimestamp(kind.value, field, typeName));
      if (kind.$case === 'stringValue') return kind.value;
      throw fail();
    case 'json':
      if (kind.$case === 'jsonText') {
        try {
          JSON.parse(kind.value);
        } catch {
          throw invalidValue(field, typeName, `"${kind.value.slice(0, 40)}" is not JSON text`);
        }
        return kind.value;
      }
      if (kind.$case === 'jsonValue') return jsonValueText(kind.value, field, typeName);
      throw fail();
    case 'bytea':
      if (kind.$case === 'bytesValue') return `\\x${Buffer.from(kind.value).toString('hex')}`;
      throw fail();
    case 'array': {
      if (kind.$case !== 'listValue') throw fail();
      const elementOid = types.base(oid)?.elementOid ?? 0;
      return kind.value.values.map((v, i) =>
        v.kind?.$case === 'listValue'
          ? (encodeValue(v, oid, types, `${field}[${i}]`) as PgParam[])
          : encodeValue(v, elementOid, types, `${field}[${i}]`),
      );
    }
    default:
      if (kind.$case === 'stringValue') return kind.value;
      if (kind.$case === 'timestampValue' && types.base(oid)?.name === 'date') {
        return formatDate(checkedTimestamp(kind.value, field, typeName));
      }
      throw fail();
  }
}
