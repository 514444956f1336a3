import type { Value } from '@sluice/proto';
import { Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectRejection } from './expect-rejection';
import { ACME, type DataClient, startStack, type TestStack } from './helpers';
import { eq, records, row, V } from './wire-values';

let stack: TestStack;
let alice: DataClient;
let service: DataClient;

beforeAll(async () => {
  stack = await startStack();
  alice = stack.client(await stack.token('alice'));
  service = stack.client(await stack.token('service'));
});
afterAll(async () => {
  await stack?.close();
});

const INT8_MIN = -9223372036854775808n;
const INT8_MAX = 9223372036854775807n;
const BIG_NUMERIC = '123456789012345678901234567890.123456789';
const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
const TRICKY_TEXTS = ['a,b', 'say "hi"', '{braces}', 'back\\slash', '', 'NULL', ' spaced ', 'ünï 🚀'];
const NESTED_JSON = {
  object: { deeper: { list: [1, -2.5, 'three', null, true, { k: 'v' }] } },
  unicode: 'żółw 🐢 — “quotes” \\ \n',
  empty: { a: [], o: {} },
};
// 2024-02-29T12:34:56.123456Z
const TS_SECONDS = 1709210096n;

const COLUMNS = [
  'i2',
  'i4',
  'i8',
  'f4',
  'f8',
  'num',
  'flag',
  'label',
  'vc',
  'uid',
  'ts',
  'ts_local',
  'd',
  't',
  'iv',
  'js',
  'jsb',
  'bin',
  'tags',
  'ints',
  'mood',
] as const;
type Column = (typeof COLUMNS)[number];

/** Inserts one row into type_samples (returning every column), then reads it back with Select. */
async function roundTrip(values: Partial<Record<Column, Value>>) {
  const columns = Object.keys(values) as Column[];
  const inserted = await alice.insert({
    table: 'type_samples',
    columns: ['tenant_id', ...columns],
    rows: [row(V.str(ACME), ...columns.map((c) => values[c] as Value))],
    returning: ['id', ...COLUMNS],
  });
  expect(inserted.affected).toBe(1n);
  const id = inserted.result?.rows[0]?.values[0] as Value;
  const selected = await alice.select({
    table: 'type_samples',
    columns: ['id', ...COLUMNS],
    filter: eq('id', id),
  });
  // Insert ... returning and Select decode the same way.
  expect(selected.result).toEqual(inserted.result);
  return { record: records(selected.result)[0] as Record<string, unknown>, result: selected.result };
}

describe('type round trips through Insert (returning) and Select', () => {
  it('integers at their bounds, exactly', async () => {
    const max = await roundTrip({ i2: V.int(32767), i4: V.int(2147483647), i8: V.int(INT8_MAX) });
    expect(max.record).toMatchObject({ i2: 32767n, i4: 2147483647n, i8: INT8_MAX });
    const min = await roundTrip({ i2: V.int(-32768), i4: V.int(-2147483648), i8: V.int(INT8_MIN) });
    expect(min.record).toMatchObject({ i2: -32768n, i4: -2147483648n, i8: INT8_MIN });
    // A filter finds the row by the exact int8 value (no float in between).
    const found = await alice.select({
      table: 'type_samples',
      columns: ['i8'],
      filter: eq('i8', V.int(INT8_MIN)),
    });
    expect(records(found.result)).toEqual([{ i8: INT8_MIN }]);
    const near = await alice.select({
      table: 'type_samples',
      columns: ['id'],
      filter: eq('i8', V.int(INT8_MIN + 1n)),
    });
    expect(near.result?.rows).toEqual([]);
  });

  it('numeric with 39 significant digits, and decimal strings', async () => {
    const { record } = await roundTrip({ num: V.decimal(BIG_NUMERIC) });
    expect(record.num).toBe(BIG_NUMERIC);
    const tiny = await roundTrip({ num: V.decimal('-0.000000000000000000000000000001') });
    expect(tiny.record.num).toBe('-0.000000000000000000000000000001');
    const nan = await roundTrip({ num: V.decimal('NaN') });
    expect(nan.record.num).toBe('NaN');
    const fromInt = await roundTrip({ num: V.int(INT8_MAX) });
    expect(fromInt.record.num).toBe(INT8_MAX.toString());
  });

  it('float special values', async () => {
    const a = await roundTrip({ f8: V.double(Number.NaN), f4: V.double(Number.POSITIVE_INFINITY) });
    expect(a.record.f8).toBeNaN();
    expect(a.record.f4).toBe(Number.POSITIVE_INFINITY);
    const b = await roundTrip({ f8: V.double(Number.NEGATIVE_INFINITY), f4: V.double(1.5) });
    expect(b.record).toMatchObject({ f8: Number.NEGATIVE_INFINITY, f4: 1.5 });
    const c = await roundTrip({ f8: V.double(0.1 + 0.2) });
    expect(c.record.f8).toBe(0.1 + 0.2); // shortest exact text form: no digits lost
    const negZero = await roundTrip({ f8: V.double(-0) });
    expect(Object.is(negZero.record.f8, -0)).toBe(true);
  });

  it('timestamptz keeps microseconds; nanoseconds round to microseconds', async () => {
    const exact = await roundTrip({ ts: V.ts(TS_SECONDS, 123456000) });
    expect(exact.record.ts).toEqual({ seconds: TS_SECONDS, nanos: 123456000 });
    const rounded = await roundTrip({ ts: V.ts(TS_SECONDS, 123456789) });
    expect(rounded.record.ts).toEqual({ seconds: TS_SECONDS, nanos: 123457000 });
    const old = await roundTrip({ ts: V.ts(-86400n * 365n * 100n, 1000) }); // 1870
    expect(old.record.ts).toEqual({ seconds: -86400n * 365n * 100n, nanos: 1000 });
    const fromText = await roundTrip({ ts: V.str('2024-02-29 14:34:56.5+02') });
    expect(fromText.record.ts).toEqual({ seconds: TS_SECONDS, nanos: 500000000 });
    const infinite = await roundTrip({ ts: V.str('infinity') });
    expect(infinite.record.ts).toBe('infinity');
  });

  it('timestamp without time zone, date, time and interval', async () => {
    const { record } = await roundTrip({
      ts_local: V.ts(TS_SECONDS, 654321000),
      d: V.str('2024-02-29'),
      t: V.str('23:59:59.999999'),
      iv: V.str('1 year 2 mons 3 days 04:05:06.789'),
    });
    expect(record.ts_local).toEqual({ seconds: TS_SECONDS, nanos: 654321000 });
    expect(record.d).toBe('2024-02-29');
    expect(record.t).toBe('23:59:59.999999');
    // IntervalStyle iso_8601, which reads back in as the same interval.
    expect(record.iv).toBe('P1Y2M3DT4H5M6.789S');
    const again = await roundTrip({ iv: V.str(record.iv as string), d: V.ts(TS_SECONDS) });
    expect(again.record.iv).toBe('P1Y2M3DT4H5M6.789S');
    expect(again.record.d).toBe('2024-02-29');
    const negative = await roundTrip({ iv: V.str('-1 days -00:00:01'), d: V.str('0001-01-01 BC') });
    expect(negative.record.iv).toBe('P-1DT-1S');
    expect(negative.record.d).toBe('0001-01-01 BC');
  });

  it('jsonb and json, nested, with unicode (answers carry JSON text)', async () => {
    const { record } = await roundTrip({ jsb: V.json(NESTED_JSON), js: V.json(NESTED_JSON) });
    expect(JSON.parse(record.jsb as string)).toEqual(NESTED_JSON);
    // json keeps the text as sent; jsonb is PostgreSQL's normalized form.
    expect(record.js).toBe(JSON.stringify(NESTED_JSON));
    const scalars = await roundTrip({ jsb: V.json('just a string'), js: V.json([1, 'two', null]) });
    expect(scalars.record).toMatchObject({ jsb: '"just a string"', js: '[1,"two",null]' });
    const numbers = await roundTrip({ jsb: V.json(-1.25e-7), js: V.json(false) });
    expect(numbers.record).toMatchObject({ jsb: '-0.000000125', js: 'false' });
    const structured = await roundTrip({ jsb: V.jsonValue(NESTED_JSON) });
    expect(JSON.parse(structured.record.jsb as string)).toEqual(NESTED_JSON);
  });

  it('bytea with all 256 byte values', async () => {
    const { record } = await roundTrip({ bin: V.bytes(ALL_BYTES) });
    expect(Buffer.compare(record.bin as Buffer, ALL_BYTES)).toBe(0);
    const empty = await roundTrip({ bin: V.bytes(new Uint8Array()) });
    expect((empty.record.bin as Buffer).length).toBe(0);
  });

  it('text[] with commas, quotes, braces, backslashes and NULL; int8[]', async () => {
    const { record } = await roundTrip({
      tags: V.list([...TRICKY_TEXTS.map(V.str), V.null()]),
      ints: V.list([V.int(INT8_MIN), V.int(0), V.null(), V.int(INT8_MAX)]),
    });
    expect(record.tags).toEqual([...TRICKY_TEXTS, null]);
    expect(record.ints).toEqual([INT8_MIN, 0n, null, INT8_MAX]);
    const empty = await roundTrip({ tags: V.list([]) });
    expect(empty.record.tags).toEqual([]);
    // Array operators take the same encoding.
    const found = await alice.select({
      table: 'type_samples',
      columns: ['tags'],
      filter: {
        kind: {
          $case: 'condition',
          value: {
            column: 'tags',
            op: 11,
            value: V.list([V.str('{braces}'), V.str('NULL')]),
            values: [],
            textSearchConfig: '',
          },
        },
      },
    });
    expect(records(found.result)).toEqual([{ tags: [...TRICKY_TEXTS, null] }]);
  });

  it('enum, uuid, bool, text and varchar', async () => {
    const { record } = await roundTrip({
      mood: V.str('sad'),
      uid: V.str('ABCDEF01-2345-6789-ABCD-EF0123456789'),
      flag: V.bool(false),
      label: V.str('hello, wörld 🚀'),
      vc: V.str('x'.repeat(50)),
    });
    expect(record).toMatchObject({
      mood: 'sad',
      uid: 'abcdef01-2345-6789-abcd-ef0123456789',
      flag: false,
      label: 'hello, wörld 🚀',
      vc: 'x'.repeat(50),
    });
  });

  it('null in every column, with every column typed', async () => {
    const nulls = Object.fromEntries(COLUMNS.map((c) => [c, V.null()])) as Record<Column, Value>;
    const { record, result } = await roundTrip(nulls);
    for (const c of COLUMNS) expect(record[c], c).toBeNull();
    expect(result?.rows[0]?.values.slice(1).every((v) => v.kind === undefined)).toBe(true);
    expect(Object.fromEntries(result?.columns.map((c) => [c.name, c.type]) ?? [])).toEqual({
      id: 'int8',
      i2: 'int2',
      i4: 'int4',
      i8: 'int8',
      f4: 'float4',
      f8: 'float8',
      num: 'numeric',
      flag: 'bool',
      label: 'text',
      vc: 'varchar',
      uid: 'uuid',
      ts: 'timestamptz',
      ts_local: 'timestamp',
      d: 'date',
      t: 'time',
      iv: 'interval',
      js: 'json',
      jsb: 'jsonb',
      bin: 'bytea',
      tags: 'text[]',
      ints: 'int8[]',
      mood: 'public.mood',
    });
  });

  it('the seeded post 1 view_count 2^53 + 1 reads exactly', async () => {
    const res = await alice.select({
      table: 'posts',
      columns: ['view_count', 'score'],
      filter: eq('id', V.int(1)),
    });
    expect(records(res.result)).toEqual([{ view_count: 9007199254740993n, score: '4.5000000001' }]);
    const seeded = await alice.select({
      table: 'type_samples',
      columns: ['ints', 'ts', 'bin'],
      filter: eq('id', V.int(1)),
    });
    const [s] = records(seeded.result);
    expect(s?.ints).toEqual([INT8_MIN, 0n, 9007199254740993n]);
    expect(s?.ts).toEqual({ seconds: TS_SECONDS, nanos: 123456000 });
    expect(Buffer.from(s?.bin as Buffer).toString('hex')).toBe('00ff10deadbeef');
  });
});

describe('values of the wrong kind are refused', () => {
  async function sampleCount() {
    const res = await service.select({ table: 'type_samples', limit: 1, count: 1 });
    return res.count;
  }

  async function insertOne(column: Column, value: Value) {
    return alice.insert({
      table: 'type_samples',
      columns: ['tenant_id', column],
      rows: [row(V.str(ACME), value)],
    });
  }

  it('a string that is not a number into int8: INVALID_ARGUMENT', async () => {
    const before = await sampleCount();
    const r = await expectRejection(insertOne('i8', V.str('twelve')), {
      code: Status.INVALID_ARGUMENT,
      reason: 'SLUICE_INVALID_VALUE',
    });
    expect(r.message).toMatch(/bigint/);
    await expectRejection(insertOne('i8', V.decimal('12x')), {
      code: Status.INVALID_ARGUMENT,
      reason: 'SLUICE_WRONG_TYPE',
    });
    await expectRejection(insertOne('i4', V.double(1.5)), {
      code: Status.INVALID_ARGUMENT,
      reason: 'SLUICE_WRONG_TYPE',
    });
    await expectRejection(insertOne('i8', V.decimal('9223372036854775808')), {
      code: Status.INVALID_ARGUMENT,
    });
    expect(await sampleCount()).toBe(before);
  });

  it('bytes into a text column: INVALID_ARGUMENT SLUICE_WRONG_TYPE naming the field', async () => {
    const before = await sampleCount();
    const r = await expectRejection(insertOne('label', V.bytes(Buffer.from('hi'))), {
      code: Status.INVALID_ARGUMENT,
      reason: 'SLUICE_WRONG_TYPE',
    });
    expect(r.fields).toEqual(['rows[0].values[1]']);
    await expectRejection(insertOne('jsb', V.int(1)), {
      code: Status.INVALID_ARGUMENT,
      reason: 'SLUICE_WRONG_TYPE',
    });
    await expectRejection(insertOne('bin', V.str('\\x00')), {
      code: Status.INVALID_ARGUMENT,
      reason: 'SLUICE_WRONG_TYPE',
    });
    await expectRejection(insertOne('tags', V.str('{a,b}')), {
      code: Status.INVALID_ARGUMENT,
      reason: 'SLUICE_WRONG_TYPE',
    });
    const nested = await expectRejection(insertOne('ints', V.list([V.int(1), V.str('x'), V.bool(true)])), {
      code: Status.INVALID_ARGUMENT,
      reason: 'SLUICE_WRONG_TYPE',
    });
    expect(nested.fields).toEqual(['rows[0].values[1][2]']);
    const inUpdate = await expectRejection(
      alice.update({
        table: 'type_samples',
        set: [{ column: 'ts', value: V.bool(true) }],
        filter: eq('id', V.int(1)),
      }),
      { code: Status.INVALID_ARGUMENT, reason: 'SLUICE_WRONG_TYPE' },
    );
    expect(inUpdate.fields).toEqual(['set[0].value']);
    expect(await sampleCount()).toBe(before);
  });

  it('out-of-range int2, and other values PostgreSQL rejects: INVALID_ARGUMENT', async () => {
    const before = await sampleCount();
    await expectRejection(insertOne('i2', V.int(32768)), {
      code: Status.INVALID_ARGUMENT,
      reason: 'SLUICE_INVALID_VALUE',
    });
    await expectRejection(insertOne('i4', V.int(-2147483649n)), {
      code: Status.INVALID_ARGUMENT,
      reason: 'SLUICE_INVALID_VALUE',
    });
    await expectRejection(insertOne('uid', V.str('not-a-uuid')), {
      code: Status.INVALID_ARGUMENT,
      reason: 'SLUICE_INVALID_VALUE',
    });
    await expectRejection(insertOne('mood', V.str('angry')), {
      code: Status.INVALID_ARGUMENT,
      reason: 'SLUICE_INVALID_VALUE',
    });
    await expectRejection(insertOne('vc', V.str('x'.repeat(51))), {
      code: Status.INVALID_ARGUMENT,
      reason: 'SLUICE_INVALID_VALUE',
    });
    await expectRejection(insertOne('d', V.str('2023-02-29')), {
      code: Status.INVALID_ARGUMENT,
      reason: 'SLUICE_INVALID_VALUE',
    });
    expect(await sampleCount()).toBe(before);
  });

  it('the same checks apply to filter values', async () => {
    const r = await expectRejection(
      alice.select({ table: 'type_samples', filter: eq('label', V.bytes(Buffer.from('x'))) }),
      { code: Status.INVALID_ARGUMENT, reason: 'SLUICE_WRONG_TYPE' },
    );
    expect(r.fields).toEqual(['filter.condition.value']);
    await expectRejection(alice.select({ table: 'type_samples', filter: eq('i2', V.int(70000)) }), {
      code: Status.INVALID_ARGUMENT,
      reason: 'SLUICE_INVALID_VALUE',
    });
    // An over-long value is compared as sent, not truncated to varchar(50) first.
    const longer = await alice.select({
      table: 'type_samples',
      columns: ['id'],
      filter: eq('vc', V.str('x'.repeat(51))),
    });
    expect(longer.result?.rows).toEqual([]);
    const exact = await alice.select({
      table: 'type_samples',
      columns: ['vc'],
      filter: eq('vc', V.str('x'.repeat(50))),
    });
    expect(records(exact.result)).toEqual([{ vc: 'x'.repeat(50) }]);
  });
});
