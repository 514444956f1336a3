import { invalidArgument, type SluiceError } from '@sluice/core';
import { encodeValue, type PgParam, type TypeRegistry } from '@sluice/db';
import { type Condition, type Filter, Operator, type Value } from '@sluice/proto';
import { MAX_FILTER_DEPTH, MAX_FILTER_NODES, MAX_IN_VALUES, quote } from '@sluice/query';

/**
 * In-memory evaluation of a Sluice filter on one changed row, so thousands of subscriptions can
 * be matched against every change without a query each. The predicate must agree with what the
 * data service's Select would return for the same filter, so each column type gets a "domain"
 * that reproduces PostgreSQL's input parsing of the filter's constants and PostgreSQL's
 * comparison of values, and the filter tree follows SQL's three-valued logic.
 *
 * Rows arrive as PostgreSQL's raw text output in the session settings @sluice/db pools use
 * (TimeZone=UTC, DateStyle=ISO, IntervalStyle=iso_8601).
 *
 * Known departures from PostgreSQL, all refusals rather than silent differences:
 * - date, time and timestamp constants must be ISO 8601 ('2024-01-02', '10:00:00',
 *   '2024-01-02T10:00:00.5Z' or 'infinity'); PostgreSQL's other spellings ('today', 'Jan 2 2024')
 *   are rejected with SLUICE_INVALID_VALUE.
 * - json, interval and array columns take only IS (json has no equality in PostgreSQL; interval
 *   and array equality is not on the text form); jsonb takes equality only.
 * - What memory cannot decide as PostgreSQL does — text under a locale's or a nondeterministic
 *   collation, jsonb, types without a domain here (inet, citext, timetz, …) — is not decided
 *   here: the matcher says so (RowMatcher.exact) and the events service asks PostgreSQL.
 */

/** A row's raw PostgreSQL text values (null for SQL NULL), in the order of the matcher's columns. */
export type RowValues = readonly (string | null)[];

export interface MatcherColumn {
  readonly name: string;
  readonly typeOid: number;
  /** The column's collation class (CatalogColumn.collation); absent: compared as bytes. */
  readonly collation?: 'bytes' | 'deterministic' | 'nondeterministic' | null;
}

/**
 * True when the row satisfies the filter (SQL WHERE semantics: unknown does not match). When
 * `exact` is false the filter compares something memory cannot decide as PostgreSQL would (text
 * under a locale's collation, jsonb, types without a domain here): the predicate then matches
 * every row, and the caller must ask PostgreSQL (the events service evaluates such filters with
 * the data service's SQL compiler, so live, snapshot and Select agree).
 */
export interface RowMatcher {
  (row: RowValues): boolean;
  readonly exact: boolean;
}

/** SQL truth value: null is unknown. */
type Truth = boolean | null;
type Node = (row: RowValues) => Truth;

/** Operators of the data service that the events service does not evaluate in memory. */
const UNSUPPORTED = new Set<Operator>([
  Operator.OPERATOR_LIKE,
  Operator.OPERATOR_ILIKE,
  Operator.OPERATOR_CONTAINS,
  Operator.OPERATOR_CONTAINED_BY,
  Operator.OPERATOR_OVERLAPS,
  Operator.OPERATOR_MATCH,
]);

/**
 * Compiles `filter` into a predicate over rows with `columns`, validating it as the data service
 * does: unknown columns (SLUICE_UNKNOWN_COLUMN), operators the events service does not support
 * (SLUICE_OPERATOR_NOT_SUPPORTED), operators that do not suit a column's type
 * (SLUICE_OPERATOR_NOT_APPLICABLE), values of the wrong kind (SLUICE_WRONG_TYPE) or content
 * PostgreSQL would reject (SLUICE_INVALID_VALUE), null for a comparison (SLUICE_VALUE_REQUIRED),
 * empty nodes (SLUICE_EMPTY_FILTER) and oversized trees (SLUICE_FILTER_TOO_COMPLEX), naming field
 * paths under `field` like `filter.and.filters[1].condition.column`. Every column a condition
 * names is passed to `checkColumn` (with its field path), which throws when the caller may not
 * read it. An undefined filter matches every row.
 *
 * Compile once per subscription: constants are parsed here, and the returned predicate only
 * parses the row's values it needs.
 *
 * @throws SluiceError INVALID_ARGUMENT as above, or whatever `checkColumn` throws.
 */
export function compileMatcher(
  filter: Filter | undefined,
  columns: readonly MatcherColumn[],
  types: TypeRegistry,
  field: string,
  checkColumn: (name: string, field: string) => void,
): RowMatcher {
  if (filter === undefined) return Object.assign(() => true, { exact: true });
  const byName = new Map<string, number>();
  columns.forEach((c, i) => {
    if (!byName.has(c.name)) byName.set(c.name, i);
  });
  const scope: Scope = { columns, byName, types, checkColumn, nodes: 0, exact: true };
  const node = compileNode(filter, scope, field, 0);
  if (!scope.exact) return Object.assign(() => true, { exact: false });
  return Object.assign((row: RowValues) => node(row) === true, { exact: true });
}

interface Scope {
  readonly columns: readonly MatcherColumn[];
  readonly byName: ReadonlyMap<string, number>;
  readonly types: TypeRegistry;
  readonly checkColumn: (name: string, field: string) => void;
  nodes: number;
  /** Cleared by a condition memory cannot decide exactly (see RowMatcher). */
  exact: boolean;
}

function compileNode(filter: Filter, scope: Scope, field: string, depth: number): Node {
  scope.nodes++;
  if (depth > MAX_FILTER_DEPTH || scope.nodes > MAX_FILTER_NODES) {
    throw invalidArgument(
      'SLUICE_FILTER_TOO_COMPLEX',
      field,
      `Filters may nest ${MAX_FILTER_DEPTH} deep and hold ${MAX_FILTER_NODES} nodes at most`,
    );
  }
  const kind = filter.kind;
  switch (kind?.$case) {
    case 'and':
    case 'or': {
      const parts = kind.value.filters.map((f, i) =>
        compileNode(f, scope, `${field}.${kind.$case}.filters[${i}]`, depth + 1),
      );
      return kind.$case === 'and' ? andOf(parts) : orOf(parts);
    }
    case 'not': {
      const inner = compileNode(kind.value, scope, `${field}.not`, depth + 1);
      return (row) => {
        const t = inner(row);
        return t === null ? null : !t;
      };
    }
    case 'condition':
      return compileCondition(kind.value, scope, `${field}.condition`);
    default:
      throw invalidArgument('SLUICE_EMPTY_FILTER', field, 'A filter node must set and, or, not or condition');
  }
}

/** SQL AND: false wins over unknown; an empty list is true. */
function andOf(parts: readonly Node[]): Node {
  if (parts.length === 1) return parts[0] as Node;
  return (row) => {
    let unknown = false;
    for (const part of parts) {
      const t = part(row);
      if (t === false) return false;
      if (t === null) unknown = true;
    }
    return unknown ? null : true;
  };
}

/** SQL OR: true wins over unknown; an empty list is false. */
function orOf(parts: readonly Node[]): Node {
  if (parts.length === 1) return parts[0] as Node;
  return (row) => {
    let unknown = false;
    for (const part of parts) {
      const t = part(row);
      if (t === true) return true;
      if (t === null) unknown = true;
    }
    return unknown ? null : false;
  };
}

function isNull(value: Value | undefined): boolean {
  return value?.kind === undefined || value.kind.$case === 'nullValue';
}

function compileCondition(condition: Condition, scope: Scope, field: string): Node {
  const index = scope.byName.get(condition.column);
  if (index === undefined) {
    throw invalidArgument(
      'SLUICE_UNKNOWN_COLUMN',
      `${field}.column`,
      `Unknown column ${quote(condition.column)}`,
    );
  }
  scope.checkColumn(condition.column, `${field}.column`);
  const column = scope.columns[index] as MatcherColumn;
  const op = condition.op;
  const valueField = `${field}.value`;
  const wrongOperator = (why: string) =>
    invalidArgument(
      'SLUICE_OPERATOR_NOT_APPLICABLE',
      `${field}.op`,
      `${Operator[op] ?? op} ${why} (column ${column.name})`,
    );
  if (UNSUPPORTED.has(op)) {
    throw invalidArgument(
      'SLUICE_OPERATOR_NOT_SUPPORTED',
      `${field}.op`,
      `${Operator[op]} is not supported in event filters (use EQ, NEQ, LT, LTE, GT, GTE, IN or IS)`,
    );
  }
  const domain = domainFor(column.typeOid, scope.types);
  const constant = (value: Value | undefined, f: string): unknown => {
    const text = encodeValue(value, column.typeOid, scope.types, f);
    const parsed = typeof text === 'string' && !text.includes('\0') ? domain.fromInput(text) : undefined;
    if (parsed === undefined) throw invalidValue(f, text, scope.types.name(column.typeOid));
    return parsed;
  };

  switch (op) {
    case Operator.OPERATOR_EQ:
    case Operator.OPERATOR_NEQ:
    case Operator.OPERATOR_GT:
    case Operator.OPERATOR_GTE:
    case Operator.OPERATOR_LT:
    case Operator.OPERATOR_LTE: {
      const equality = op === Operator.OPERATOR_EQ || op === Operator.OPERATOR_NEQ;
      if (domain.ops === 'none' || (!equality && domain.ops !== 'ordered')) {
        throw wrongOperator(
          `is not available in event filters for columns of type ${scope.types.name(column.typeOid)}`,
        );
      }
      if (isNull(condition.value)) {
        throw invalidArgument(
          'SLUICE_VALUE_REQUIRED',
          valueField,
          'This operator needs a non-null value (use IS for null)',
        );
      }
      if (!exactInMemory(domain, column, op)) scope.exact = false;
      return comparison(index, domain, constant(condition.value, valueField), op);
    }
    case Operator.OPERATOR_IN: {
      if (condition.values.length > MAX_IN_VALUES) {
        throw invalidArgument(
          'SLUICE_TOO_MANY_VALUES',
          `${field}.values`,
          `IN takes ${MAX_IN_VALUES} values at most`,
        );
      }
      if (scope.types.kind(column.typeOid) === 'array') {
        throw wrongOperator('does not apply to array columns (use CONTAINS or OVERLAPS)');
      }
      if (domain.ops === 'none') {
        throw wrongOperator(
          `is not available in event filters for columns of type ${scope.types.name(column.typeOid)}`,
        );
      }
      if (!exactInMemory(domain, column, op)) scope.exact = false;
      const keys = new Set<unknown>();
      let hasNull = false;
      condition.values.forEach((v, i) => {
        const f = `${field}.values[${i}]`;
        if (isNull(v)) {
          encodeValue(v, column.typeOid, scope.types, f);
          hasNull = true;
        } else keys.add(domain.key(constant(v, f)));
      });
      return inList(index, domain, keys, hasNull);
    }
    case Operator.OPERATOR_IS: {
      const value = condition.value;
      if (isNull(value)) return (row) => row[index] === null;
      if (value?.kind?.$case === 'boolValue') {
        if (scope.types.kind(column.typeOid) !== 'bool') {
          throw wrongOperator('with true or false applies to boolean columns only');
        }
        const want = value.kind.value ? 't' : 'f';
        return (row) => row[index] === want;
      }
      throw invalidArgument('SLUICE_WRONG_TYPE', valueField, 'IS takes null, true or false');
    }
    default:
      throw invalidArgument('SLUICE_UNKNOWN_OPERATOR', `${field}.op`, `Unknown operator ${op}`);
  }
}

/**
 * Whether comparing with `op` on this column gives PostgreSQL's answer in memory. Text follows
 * its collation: byte order decides every operator exactly, another deterministic collation
 * (a libc or ICU locale) only equality (equal exactly when the bytes are), a nondeterministic
 * one (case-insensitive ICU, …) nothing. Types without a domain of their own (citext, inet, …)
 * and jsonb are left to PostgreSQL too.
 */
function exactInMemory(domain: Domain, column: MatcherColumn, op: Operator): boolean {
  if (domain === OTHER || domain === JSONB) return false;
  switch (column.collation ?? 'bytes') {
    case 'bytes':
      return true;
    case 'deterministic':
      return op === Operator.OPERATOR_EQ || op === Operator.OPERATOR_NEQ || op === Operator.OPERATOR_IN;
    default:
      return false;
  }
}

function invalidValue(field: string, text: PgParam, typeName: string): SluiceError {
  const shown = typeof text === 'string' ? JSON.stringify(text.slice(0, 60)) : 'this value';
  return invalidArgument(
    'SLUICE_INVALID_VALUE',
    field,
    `${shown} is not a valid ${typeName} value (event filters take dates and times in ISO 8601)`,
  );
}

function comparison(index: number, domain: Domain, constant: unknown, op: Operator): Node {
  const { fromRow, compare } = domain;
  const test = TESTS[op] as (c: number) => boolean;
  return (row) => {
    const text = row[index];
    if (text === null || text === undefined) return null;
    return test(compare(fromRow(text), constant));
  };
}

const TESTS: Partial<Record<Operator, (c: number) => boolean>> = {
  [Operator.OPERATOR_EQ]: (c) => c === 0,
  [Operator.OPERATOR_NEQ]: (c) => c !== 0,
  [Operator.OPERATOR_LT]: (c) => c < 0,
  [Operator.OPERATOR_LTE]: (c) => c <= 0,
  [Operator.OPERATOR_GT]: (c) => c > 0,
  [Operator.OPERATOR_GTE]: (c) => c >= 0,
};

/** `column = any(values)`: an empty list is false even for NULL; a NULL column or element makes a miss unknown. */
function inList(index: number, domain: Domain, keys: ReadonlySet<unknown>, hasNull: boolean): Node {
  if (keys.size === 0) return hasNull ? () => null : () => false;
  const { fromRow, key } = domain;
  return (row) => {
    const text = row[index];
    if (text === null || text === undefined) return null;
    if (keys.has(key(fromRow(text)))) return true;
    return hasNull ? null : false;
  };
}

// ---------------------------------------------------------------------------------------------
// Domains: how PostgreSQL parses and compares the values of a type.

interface Domain {
  /** Which comparison operators apply: all, EQ/NEQ/IN only, or none (IS only). */
  readonly ops: 'ordered' | 'equality' | 'none';
  /** Parses PostgreSQL's output text of a row's value. */
  fromRow(text: string): unknown;
  /** Parses a filter constant's text as PostgreSQL's input function would; undefined where it would reject it. */
  fromInput(text: string): unknown;
  /** Sign of a - b in PostgreSQL's ordering (equality domains: 0 when equal, 1 otherwise). */
  compare(a: unknown, b: unknown): number;
  /** A value equal (SameValueZero) for values PostgreSQL finds equal, for IN sets. */
  key(value: unknown): unknown;
}

const identity = (v: unknown) => v;
const compareBasic = (a: unknown, b: unknown) =>
  (a as number) < (b as number) ? -1 : (a as number) > (b as number) ? 1 : 0;

function domainFor(oid: number, types: TypeRegistry): Domain {
  const base = types.base(oid);
  const name = base?.name ?? '';
  switch (types.kind(oid)) {
    case 'bool':
      return BOOL;
    case 'int':
      return intDomain(name);
    case 'float':
      return name === 'float4' ? FLOAT4 : FLOAT8;
    case 'numeric':
      return NUMERIC;
    case 'timestamptz':
      return TIMESTAMPTZ;
    case 'timestamp':
      return TIMESTAMP;
    case 'json':
      return name === 'jsonb' ? JSONB : NONE;
    case 'bytea':
      return BYTEA;
    case 'array':
      return NONE;
    default:
      break;
  }
  if (base && base.enumValues.length > 0) return enumDomain(base.enumValues);
  switch (name) {
    case 'text':
    case 'varchar':
    case 'name':
      return TEXT;
    case 'bpchar':
      return BPCHAR;
    case 'uuid':
      return UUID;
    case 'date':
      return DATE;
    case 'time':
      return TIME;
    case 'interval':
      return NONE;
    default:
      return OTHER;
  }
}

/** IS only. */
const NONE: Domain = {
  ops: 'none',
  fromRow: identity,
  fromInput: identity,
  compare: () => 1,
  key: identity,
};

/** Exact text equality, for types with no domain of their own. */
const OTHER: Domain = {
  ops: 'equality',
  fromRow: identity,
  fromInput: identity,
  compare: (a, b) => (a === b ? 0 : 1),
  key: identity,
};

/** PostgreSQL's isspace() set, which input functions trim. */
const PG_SPACE = /^[ \t\n\r\v\f]+|[ \t\n\r\v\f]+$/g;
const trimPg = (text: string) => text.replace(PG_SPACE, '');

// bool: boolin accepts unique prefixes of true/false/yes/no, on/off (two letters at least), 1/0.
const BOOL: Domain = {
  ops: 'ordered',
  fromRow: (text) => (text === 't' ? 1 : 0),
  fromInput(text) {
    const s = trimPg(text).toLowerCase();
    if (s === '') return undefined;
    if ('true'.startsWith(s) || 'yes'.startsWith(s) || s === '1' || (s.length >= 2 && 'on'.startsWith(s)))
      return 1;
    if ('false'.startsWith(s) || 'no'.startsWith(s) || s === '0' || (s.length >= 2 && 'off'.startsWith(s)))
      return 0;
    return undefined;
  },
  compare: compareBasic,
  key: identity,
};

// Integers: PostgreSQL 16+ input takes 0x/0o/0b prefixes and underscores between digits.
const INT_RE = /^([+-]?)(?:0[xX]((?:_?[0-9a-fA-F])+)|0[oO]((?:_?[0-7])+)|0[bB]((?:_?[01])+)|(\d+(?:_\d+)*))$/;

function parsePgInt(text: string): bigint | undefined {
  const m = INT_RE.exec(trimPg(text));
  if (!m) return undefined;
  const [, sign, hex, oct, bin, dec] = m;
  const digits =
    hex !== undefined ? `0x${hex}` : oct !== undefined ? `0o${oct}` : bin !== undefined ? `0b${bin}` : dec;
  const n = BigInt((digits as string).replaceAll('_', ''));
  return sign === '-' ? -n : n;
}

const INT_RANGES: Readonly<Record<string, readonly [bigint, bigint]>> = {
  int2: [-(2n ** 15n), 2n ** 15n - 1n],
  int4: [-(2n ** 31n), 2n ** 31n - 1n],
  int8: [-(2n ** 63n), 2n ** 63n - 1n],
  oid: [-(2n ** 31n), 2n ** 32n - 1n],
};

function intDomain(name: string): Domain {
  const [min, max] = INT_RANGES[name] ?? (INT_RANGES.int8 as readonly [bigint, bigint]);
  const wide = name === 'int8';
  return {
    ops: 'ordered',
    // int2/int4/oid fit a double exactly, which avoids a BigInt per row.
    fromRow: wide ? (text) => BigInt(text) : (text) => Number(text),
    fromInput(text) {
      let n = parsePgInt(text);
      if (n === undefined || n < min || n > max) return undefined;
      if (name === 'oid' && n < 0n) n += 2n ** 32n; // oidin wraps negative input
      return wide ? n : Number(n);
    },
    compare: compareBasic,
    key: identity,
  };
}

// Floats: PostgreSQL sorts NaN above every number and finds NaN = NaN (and -0 = 0).
function compareFloat(a: unknown, b: unknown): number {
  const x = a as number;
  const y = b as number;
  if (Number.isNaN(x)) return Number.isNaN(y) ? 0 : 1;
  if (Number.isNaN(y)) return -1;
  return x < y ? -1 : x > y ? 1 : 0;
}

const FLOAT_RE = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const FLOAT_SPECIAL = /^(?:(nan)|([+-]?)inf(?:inity)?)$/i;
const HEX_INT_RE = /^([+-]?)0[xX]([0-9a-fA-F]+)$/;

/** float8in/float4in: strtod syntax plus NaN/Infinity words; overflow and underflow to zero are errors. */
function parsePgFloat(text: string, single: boolean): number | undefined {
  const s = trimPg(text);
  const special = FLOAT_SPECIAL.exec(s);
  if (special) return special[1] ? Number.NaN : special[2] === '-' ? -Infinity : Infinity;
  let value: number;
  const hex = HEX_INT_RE.exec(s);
  if (hex) value = (hex[1] === '-' ? -1 : 1) * Number.parseInt(hex[2] as string, 16);
  else if (FLOAT_RE.test(s)) value = Number(s);
  else return undefined;
  if (single) value = Math.fround(value);
  if (!Number.isFinite(value)) return undefined;
  if (value === 0 && /[1-9]/.test(s.replace(/[eE].*$/, ''))) return undefined;
  return value;
}

const FLOAT8: Domain = {
  ops: 'ordered',
  fromRow: (text) => Number(text), // 'NaN', 'Infinity' and '-Infinity' parse as themselves
  fromInput: (text) => parsePgFloat(text, false),
  compare: compareFloat,
  key: identity, // a Set's SameValueZero treats NaN as NaN and -0 as 0, like PostgreSQL
};

const FLOAT4: Domain = {
  ...FLOAT8,
  // float4 output is the shortest text that reads back as the same float4.
  fromRow: (text) => Math.fround(Number(text)),
  fromInput: (text) => parsePgFloat(text, true),
};

// numeric: exact decimals. -Infinity < finite < Infinity < NaN, and NaN = NaN.
interface Decimal {
  /** -2 -Infinity, -1 negative, 0 zero, 1 positive, 2 Infinity, 3 NaN. */
  readonly rank: number;
  /** Significant digits, no leading or trailing zeros (empty unless rank is ±1). */
  readonly digits: string;
  /** The value is 0.digits × 10^exponent. */
  readonly exponent: number;
}

const DECIMAL_RE = /^([+-]?)(?:(\d+)(?:\.(\d*))?|\.(\d+))(?:[eE]([+-]?\d+))?$/;
const NAN_DECIMAL: Decimal = { rank: 3, digits: '', exponent: 0 };
const ZERO_DECIMAL: Decimal = { rank: 0, digits: '', exponent: 0 };

/** Parses plain decimal text (with optional exponent), as numeric output or input spells it. */
function parseDecimal(text: string): Decimal | undefined {
  if (text === 'NaN') return NAN_DECIMAL;
  if (text === 'Infinity') return { rank: 2, digits: '', exponent: 0 };
  if (text === '-Infinity') return { rank: -2, digits: '', exponent: 0 };
  const m = DECIMAL_RE.exec(text);
  if (!m) return undefined;
  const [, sign, intPart = '', fracPart = '', fracOnly, exp] = m;
  const all = fracOnly !== undefined ? fracOnly : intPart + fracPart;
  const pointAt = fracOnly !== undefined ? 0 : intPart.length;
  let start = 0;
  while (start < all.length && all.charCodeAt(start) === 48) start++;
  let end = all.length;
  while (end > start && all.charCodeAt(end - 1) === 48) end--;
  if (start === end) return ZERO_DECIMAL;
  return {
    rank: sign === '-' ? -1 : 1,
    digits: all.slice(start, end),
    exponent: pointAt - start + (exp === undefined ? 0 : Number(exp)),
  };
}

function compareDecimal(x: unknown, y: unknown): number {
  const a = x as Decimal;
  const b = y as Decimal;
  if (a.rank !== b.rank) return a.rank < b.rank ? -1 : 1;
  if (a.rank !== 1 && a.rank !== -1) return 0;
  let c = a.exponent - b.exponent;
  // Leading digits are non-zero, so with equal exponents the digit strings order like the values.
  if (c === 0) c = a.digits < b.digits ? -1 : a.digits > b.digits ? 1 : 0;
  return c === 0 ? 0 : (c < 0 ? -1 : 1) * a.rank;
}

const NUMERIC: Domain = {
  ops: 'ordered',
  fromRow: (text) => parseDecimal(text) ?? NAN_DECIMAL,
  fromInput(text) {
    let s = trimPg(text);
    if (/^nan$/i.test(s)) return NAN_DECIMAL;
    const inf = /^([+-]?)inf(?:inity)?$/i.exec(s);
    if (inf) return { rank: inf[1] === '-' ? -2 : 2, digits: '', exponent: 0 };
    if (/^[+-]?0[xXoObB]/.test(s)) {
      const n = parsePgInt(s);
      return n === undefined ? undefined : parseDecimal(n.toString());
    }
    s = s.replace(/(?<=\d)_(?=\d)/g, ''); // PostgreSQL 16+ allows underscores between digits
    const m = /[eE]([+-]?\d+)$/.exec(s);
    if (m && Math.abs(Number(m[1])) > 1000) return undefined; // numeric_in's exponent limit
    return parseDecimal(s);
  },
  compare: compareDecimal,
  key: (v) => {
    const d = v as Decimal;
    return `${d.rank}:${d.digits}:${d.exponent}`;
  },
};

/**
 * Text in the C collation, which the project's clusters use: PostgreSQL compares the UTF-8 bytes
 * (memcmp, then length). UTF-8 byte order is Unicode code point order, which this computes on the
 * UTF-16 strings without encoding them: code units order like code points except that surrogates
 * (U+10000 and up) must sort after U+E000–U+FFFF, hence the fix-up at the first difference.
 */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x !== y) {
      if (x >= 0xd800 && y >= 0xd800) {
        x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
        y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
      }
      return x < y ? -1 : 1;
    }
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}

const TEXT: Domain = {
  ops: 'ordered',
  fromRow: identity,
  fromInput: identity,
  compare: (a, b) => compareCodePoints(a as string, b as string),
  key: identity,
};

/** char(n): trailing spaces are insignificant on both sides. */
const stripTrailingSpaces = (text: string) => text.replace(/ +$/, '');
const BPCHAR: Domain = {
  ...TEXT,
  fromRow: (text) => stripTrailingSpaces(text),
  fromInput: (text) => stripTrailingSpaces(text),
};

/** bytea output is '\x' and lowercase hex, whose string order is the bytes' order. */
const BYTEA: Domain = {
  ops: 'ordered',
  fromRow: identity,
  fromInput: (text) => (/^\\x([0-9a-f]{2})*$/.test(text) ? text : undefined),
  compare: compareBasic,
  key: identity,
};

// uuid: uuid_in takes optional braces, any case and a hyphen after any group of four digits.
const UUID_IN = /^[0-9a-fA-F]{4}(?:-?[0-9a-fA-F]{4}){7}$/;
const UUID: Domain = {
  ops: 'ordered', // by bytes, which is the order of the canonical lowercase text
  fromRow: identity,
  fromInput(text) {
    const s = text.startsWith('{') && text.endsWith('}') ? text.slice(1, -1) : text;
    if (!UUID_IN.test(s)) return undefined;
    const h = s.replaceAll('-', '').toLowerCase();
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  },
  compare: compareBasic,
  key: identity,
};

function enumDomain(labels: readonly string[]): Domain {
  const order = new Map(labels.map((label, i) => [label, i]));
  return {
    ops: 'ordered', // enums sort by declaration order, not by label
    fromRow: identity,
    fromInput: (text) => (order.has(text) ? text : undefined),
    // A label added after the catalog was loaded sorts last until the catalog reloads.
    compare: (a, b) =>
      a === b
        ? 0
        : (order.get(a as string) ?? labels.length) < (order.get(b as string) ?? labels.length)
          ? -1
          : 1,
    key: identity,
  };
}

// Dates and times -------------------------------------------------------------------------------

function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}

/** Days since 1970-01-01 in the proleptic Gregorian calendar (astronomical years: 1 BC is 0). */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

/** PostgreSQL rounds fractional seconds with rint() on a double (half to even). */
function fractionMicros(digits: string | undefined): number {
  if (!digits) return 0;
  const x = Number(`0.${digits}`) * 1_000_000;
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function astronomicalYear(year: string, bc: string | undefined): number {
  return bc ? 1 - Number(year) : Number(year);
}

function validDate(year: number, month: number, day: number): boolean {
  return month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth(year, month);
}

const DATE_OUT = /^(\d{4,})-(\d\d)-(\d\d)( BC)?$/;
const DATE_IN = /^(\d{4,})-(\d{1,2})-(\d{1,2})( BC)?$/i;

function parseDate(text: string, re: RegExp): number | undefined {
  if (text === 'infinity' || text === '+infinity') return Infinity;
  if (text === '-infinity') return -Infinity;
  const m = re.exec(text);
  if (!m) return undefined;
  const year = astronomicalYear(m[1] as string, m[4]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  if (!validDate(year, month, day)) return undefined;
  return daysFromCivil(year, month, day);
}

const DATE: Domain = {
  ops: 'ordered',
  fromRow: (text) => parseDate(text, DATE_OUT) ?? Number.NaN,
  fromInput: (text) => parseDate(trimPg(text).toLowerCase().replace(/ bc$/, ' BC'), DATE_IN),
  compare: compareBasic,
  key: identity,
};

const TIME_RE = /^(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d+))?)?$/;
const DAY_MICROS = 86_400_000_000;

/** time of day in microseconds; 24:00:00 is allowed, as in PostgreSQL. */
function parseTime(text: string): number | undefined {
  const m = TIME_RE.exec(text);
  if (!m) return undefined;
  const h = Number(m[1]);
  const mi = Number(m[2]);
  const s = Number(m[3] ?? 0);
  if (h > 24 || mi > 59 || s > 60) return undefined;
  const micros = ((h * 60 + mi) * 60 + s) * 1_000_000 + fractionMicros(m[4]);
  return micros > DAY_MICROS ? undefined : micros;
}

const TIME: Domain = {
  ops: 'ordered',
  fromRow: (text) => parseTime(text) ?? Number.NaN,
  fromInput: (text) => parseTime(trimPg(text)),
  compare: compareBasic,
  key: identity,
};

// Timestamps as BigInt microseconds since the epoch; ±infinity sort beyond every timestamp.
const INFINITE_MICROS = 2n ** 100n;
const TS_OUT =
  /^(\d{4,})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(?:([+-])(\d\d)(?::(\d\d))?(?::(\d\d))?)?( BC)?$/;
const TS_IN =
  /^(\d{4,})-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d+))?)?)? ?(?:([zZ])|([+-])(\d{1,2})(?::?(\d\d))?(?::?(\d\d))?)?( BC)?$/;

function parseTimestampText(text: string, input: boolean, withZone: boolean): bigint | undefined {
  const lower = input ? trimPg(text).toLowerCase() : text;
  if (lower === 'infinity' || lower === '+infinity') return INFINITE_MICROS;
  if (lower === '-infinity') return -INFINITE_MICROS;
  let year: number;
  let month: number;
  let day: number;
  let h: number;
  let mi: number;
  let s: number;
  let frac: string | undefined;
  let offset = 0;
  if (input) {
    const m = TS_IN.exec(trimPg(text).replace(/ bc$/i, ' BC'));
    if (!m) return undefined;
    year = astronomicalYear(m[1] as string, m[13]);
    month = Number(m[2]);
    day = Number(m[3]);
    h = Number(m[4] ?? 0);
    mi = Number(m[5] ?? 0);
    s = Number(m[6] ?? 0);
    frac = m[7];
    if (h > 24 || mi > 59 || s > 60) return undefined;
    // timestamp without time zone ignores a zone in its input.
    if (m[9] && withZone) {
      const oh = Number(m[10]);
      if (oh > 15) return undefined;
      offset = (oh * 3600 + Number(m[11] ?? 0) * 60 + Number(m[12] ?? 0)) * (m[9] === '-' ? -1 : 1);
    }
  } else {
    const m = TS_OUT.exec(text);
    if (!m) return undefined;
    year = astronomicalYear(m[1] as string, m[12]);
    month = Number(m[2]);
    day = Number(m[3]);
    h = Number(m[4]);
    mi = Number(m[5]);
    s = Number(m[6]);
    frac = m[7];
    if (m[8])
      offset = (Number(m[9]) * 3600 + Number(m[10] ?? 0) * 60 + Number(m[11] ?? 0)) * (m[8] === '-' ? -1 : 1);
  }
  if (!validDate(year, month, day)) return undefined;
  const seconds = daysFromCivil(year, month, day) * 86_400 + h * 3600 + mi * 60 + s - offset;
  return BigInt(seconds) * 1_000_000n + BigInt(fractionMicros(frac));
}

function timestampDomain(withZone: boolean): Domain {
  return {
    ops: 'ordered',
    fromRow: (text) => parseTimestampText(text, false, withZone) ?? 0n,
    fromInput: (text) => parseTimestampText(text, true, withZone),
    compare: compareBasic,
    key: identity,
  };
}

const TIMESTAMPTZ = timestampDomain(true);
const TIMESTAMP = timestampDomain(false);

// jsonb: equality is structural, with numbers compared as numerics and object keys unordered.
function canonicalJson(text: string): string | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text, (_key, v, context?: { source?: string }) => {
      if (typeof v !== 'number') return v;
      const d = parseDecimal(context?.source ?? String(v)) as Decimal;
      return { [JSON_NUMBER]: `${d.rank}:${d.digits}:${d.exponent}` };
    });
  } catch {
    return undefined;
  }
  const parts: string[] = [];
  writeCanonical(value, parts);
  return parts.join('');
}

const JSON_NUMBER = Symbol('jsonNumber');

function writeCanonical(value: unknown, out: string[]): void {
  if (value === null || typeof value !== 'object') {
    out.push(JSON.stringify(value));
  } else if (Array.isArray(value)) {
    out.push('[');
    value.forEach((v, i) => {
      if (i > 0) out.push(',');
      writeCanonical(v, out);
    });
    out.push(']');
  } else if (JSON_NUMBER in value) {
    out.push(`#${(value as Record<symbol, string>)[JSON_NUMBER]}`);
  } else {
    out.push('{');
    const record = value as Record<string, unknown>;
    Object.keys(record)
      .sort()
      .forEach((k, i) => {
        if (i > 0) out.push(',');
        out.push(JSON.stringify(k), ':');
        writeCanonical(record[k], out);
      });
    out.push('}');
  }
}

const JSONB: Domain = {
  ops: 'equality',
  fromRow: (text) => canonicalJson(text),
  fromInput: (text) => canonicalJson(text),
  compare: (a, b) => (a === b ? 0 : 1),
  key: identity,
};
