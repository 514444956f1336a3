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
      return { kind: { $case: 'jsonValue', value: JSON.parse(text) } };
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

/** Parses PostgreSQL's ISO timestamp output; null for infinities or anything unexpected. */
export function parseTimestamp(text: string): Timestamp | undefined {
  const m = TIMESTAMP_RE.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, frac, sign, oh, om, os, bc] = m;
  const date = new Date(0);
  const year = bc ? 1 - Number(y) : Number(y);
  date.setUTCFullYear(year, Number(mo) - 1, Number(d));
  date.setUTCHours(Number(h), Number(mi), Number(s), 0);
  let seconds = BigInt(date.getTime() / 1000);
  if (sign) {
    const offset = Number(oh) * 3600 + Number(om ?? 0) * 60 + Number(os ?? 0);
    seconds -= BigInt(sign === '+' ? offset : -offset);
  }
  const micros = frac ? Number(frac.padEnd(6, '0')) : 0;
  return { seconds, nanos: micros * 1000 };
}

/** Formats a wire Timestamp as ISO 8601 UTC with nanoseconds (PostgreSQL rounds to microseconds). */
export function formatTimestamp(ts: Timestamp): string {
  const iso = new Date(Number(ts.seconds) * 1000).toISOString(); // 2024-01-02T03:04:05.000Z
  return `${iso.slice(0, 19)}.${String(ts.nanos).padStart(9, '0')}Z`;
}

function wrongType(field: string, typeName: string, got: string): SluiceError {
  const description = `${got} is not a valid value for a column of type ${typeName}`;
  return new SluiceError('INVALID_ARGUMENT', description, {
    reason: 'SLUICE_WRONG_TYPE',
    violations: [{ field, description }],
  });
}

const DECIMAL_RE = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$|^[+-]?(NaN|Infinity)$/;

/**
 * Encodes a wire value as a parameter for a column or argument of type `oid`.
 *
 * @throws SluiceError INVALID_ARGUMENT (SLUICE_WRONG_TYPE) when the value's kind cannot stand for
 *   that type, naming `field`. Values of the right kind but bad content (an int beyond int4, a
 *   malformed uuid) are left for PostgreSQL to reject, which maps to INVALID_ARGUMENT too.
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
      if (kind.$case === 'timestampValue') return formatTimestamp(kind.value);
      if (kind.$case === 'stringValue') return kind.value;
      throw fail();
    case 'json':
      if (kind.$case === 'jsonValue') return JSON.stringify(kind.value ?? null);
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
        return formatTimestamp(kind.value).slice(0, 10);
      }
      throw fail();
  }
}
