import { data, type Filter, Operator, type Value } from '@sluice/proto';
import { type Channel, createChannel, createClientFactory, Metadata, Status } from 'nice-grpc';
import { errorDetailsClientMiddleware } from 'nice-grpc-error-details';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectRejection } from './expect-rejection';
import { ACME, type DataClient, startStack, type TestStack } from './helpers';
import { eq, records, row, V } from './wire-values';

// Values that used to change silently or fail with the wrong status: JSON null, timestamps beyond
// years 1-9999, nanos out of range, invalid UTF-8, MATCH configurations, over-deep requests and
// enum type names. Every value PostgreSQL can store must come back as it was stored; every
// invalid one must be refused with INVALID_ARGUMENT naming the field.

let stack: TestStack;
let admin: pg.Client;
let alice: DataClient;
let channel: Channel;

beforeAll(async () => {
  stack = await startStack();
  alice = stack.client(await stack.token('alice'));
  admin = new pg.Client({ connectionString: stack.db.url });
  await admin.connect();
  await admin.query("set timezone = 'UTC'");
  await admin.query(`
    create function public.echo_timestamp(t timestamptz) returns timestamptz language sql as 'select t';
    grant execute on function public.echo_timestamp(timestamptz) to authenticated;
  `);
  for (let i = 0; ; i++) {
    const schema = await alice.describeSchema({});
    if (schema.functions.some((f) => f.name === 'echo_timestamp')) break;
    if (i > 100) throw new Error('catalog did not reload');
    await new Promise((r) => setTimeout(r, 50));
  }
  channel = createChannel(`127.0.0.1:${stack.server.port}`);
});
afterAll(async () => {
  channel?.close();
  await admin?.end();
  await stack?.close();
});

async function insertReturning(columns: string[], values: Value[]) {
  const res = await alice.insert({
    table: 'type_samples',
    columns: ['tenant_id', ...columns],
    rows: [row(V.str(ACME), ...values)],
    returning: ['id', ...columns],
  });
  const id = res.result?.rows[0]?.values[0] as Value;
  return { id, inserted: res.result?.rows[0]?.values.slice(1) ?? [] };
}

/** The stored text of a column, as PostgreSQL prints it (the oracle). */
async function stored(id: Value, column: string): Promise<string | null> {
  const key = id.kind?.$case === 'intValue' ? id.kind.value.toString() : '';
  const r = await admin.query<{ v: string | null }>(
    `select ${column}::text as v from public.type_samples where id = $1`,
    [key],
  );
  return r.rows[0]?.v ?? null;
}

async function readBack(id: Value, column: string): Promise<Value | undefined> {
  const res = await alice.select({ table: 'type_samples', columns: [column], filter: eq('id', id) });
  return res.result?.rows[0]?.values[0];
}

describe('json and jsonb: JSON null, nulls inside, and SQL NULL stay distinct', () => {
  it('JSON null is written and read as JSON null, not SQL NULL', async () => {
    const { id, inserted } = await insertReturning(['jsb', 'js'], [V.json(null), V.json(null)]);
    expect(await stored(id, 'jsb')).toBe('null');
    expect(await stored(id, 'js')).toBe('null');
    expect(inserted.map((v) => v.kind?.$case)).toEqual(['jsonText', 'jsonText']);
    const back = await readBack(id, 'jsb');
    expect(back?.kind).toEqual({ $case: 'jsonText', value: 'null' });
  });

  it('SQL NULL is no kind; JSON containing nulls keeps them', async () => {
    const { id } = await insertReturning(['jsb', 'js'], [V.null(), V.json({ a: null, b: [null, 1] })]);
    expect(await stored(id, 'jsb')).toBeNull();
    expect((await readBack(id, 'jsb'))?.kind).toBeUndefined();
    expect((await readBack(id, 'js'))?.kind).toEqual({ $case: 'jsonText', value: '{"a":null,"b":[null,1]}' });
  });

  it('numbers keep every digit, json keeps its text (key order, duplicates, spacing)', async () => {
    const r = await admin.query<{ id: string }>(
      `insert into public.type_samples (tenant_id, jsb, js) values ($1, '{"n": 12345678901234567890.5}', '{"b": 1, "a": 2, "b": 3}') returning id`,
      [ACME],
    );
    const id = V.int(BigInt(r.rows[0]?.id ?? 0));
    expect((await readBack(id, 'jsb'))?.kind).toEqual({
      $case: 'jsonText',
      value: '{"n": 12345678901234567890.5}',
    });
    expect((await readBack(id, 'js'))?.kind).toEqual({
      $case: 'jsonText',
      value: '{"b": 1, "a": 2, "b": 3}',
    });
  });

  it('json_value (google.protobuf.Value) is still accepted, and JSON null in a filter matches JSON null', async () => {
    const { id } = await insertReturning(['jsb'], [V.jsonValue({ k: [true, 'x'] })]);
    expect(await stored(id, 'jsb')).toBe('{"k": [true, "x"]}');
    const nul = await insertReturning(['jsb'], [V.json(null)]);
    const found = await alice.select({
      table: 'type_samples',
      columns: ['id'],
      filter: eq('jsb', V.json(null)),
    });
    expect(records(found.result).map((r) => r.id)).toContain(
      nul.id.kind?.$case === 'intValue' ? nul.id.kind.value : -1n,
    );
  });

  it('json_text that is not JSON is INVALID_ARGUMENT naming the field', async () => {
    const r = await expectRejection(
      alice.insert({
        table: 'type_samples',
        columns: ['tenant_id', 'jsb'],
        rows: [row(V.str(ACME), V.jsonText('{'))],
      }),
      { code: Status.INVALID_ARGUMENT, reason: 'SLUICE_INVALID_VALUE' },
    );
    expect(r.fields).toEqual(['rows[0].values[1]']);
  });
});

// 4714-11-24 00:00:00 BC and 294276-12-31 23:59:59.999999 (UTC): PostgreSQL's timestamp range.
const TS_MIN = -210866803200n;
const TS_MAX = 9224318015999n;

describe('timestamps: everything PostgreSQL stores round-trips, everything else is refused', () => {
  const cases: [string, bigint, number, string][] = [
    ['year 12345', 327403382400n, 0, '12345-01-01 00:00:00+00'],
    ['1 BC (year 0)', -62167219200n, 0, '0001-01-01 00:00:00+00 BC'],
    ['44 BC, March 15, with microseconds', -63517780800n, 250000000, '0044-03-15 12:00:00.25+00 BC'],
    ['the first instant PostgreSQL stores', TS_MIN, 0, '4714-11-24 00:00:00+00 BC'],
    ['the last instant PostgreSQL stores', TS_MAX, 999999000, '294276-12-31 23:59:59.999999+00'],
    ['before 1970 with nanos counting forward', -1n, 500000000, '1969-12-31 23:59:59.5+00'],
  ];
  for (const [name, seconds, nanos, text] of cases) {
    it(name, async () => {
      const { id, inserted } = await insertReturning(
        ['ts', 'ts_local'],
        [V.ts(seconds, nanos), V.ts(seconds, nanos)],
      );
      expect(await stored(id, 'ts')).toBe(text);
      expect(await stored(id, 'ts_local')).toBe(text.replace('+00', ''));
      expect(inserted).toEqual([V.ts(seconds, nanos), V.ts(seconds, nanos)]);
      expect(await readBack(id, 'ts')).toEqual(V.ts(seconds, nanos));
      // What PostgreSQL wrote itself reads the same, and the value finds its row in a filter.
      const found = await alice.select({
        table: 'type_samples',
        columns: ['id'],
        filter: {
          kind: { $case: 'and', value: { filters: [eq('id', id), eq('ts', V.ts(seconds, nanos))] } },
        },
      });
      expect(found.result?.rows.length).toBe(1);
    });
  }

  it('infinity and -infinity travel as string_value both ways', async () => {
    const { id, inserted } = await insertReturning(
      ['ts', 'ts_local'],
      [V.str('infinity'), V.str('-infinity')],
    );
    expect(inserted).toEqual([V.str('infinity'), V.str('-infinity')]);
    expect(await stored(id, 'ts_local')).toBe('-infinity');
  });

  it('a timestamp value into a date column keeps its day, BC and beyond 9999 too', async () => {
    const { id } = await insertReturning(['d'], [V.ts(327403382400n)]);
    expect(await stored(id, 'd')).toBe('12345-01-01');
    const bc = await insertReturning(['d'], [V.ts(-62167219200n)]);
    expect(await stored(bc.id, 'd')).toBe('0001-01-01 BC');
  });

  const refused: [string, bigint, number][] = [
    ['seconds 1e15', 1_000_000_000_000_000n, 0],
    ['seconds -1e15', -1_000_000_000_000_000n, 0],
    ['int64 max', 9223372036854775807n, 0],
    ['int64 min', -9223372036854775808n, 0],
    ['one second past the last instant', TS_MAX + 1n, 0],
    ['nanos that round past the last instant', TS_MAX, 999999500],
    ['one second before the first instant', TS_MIN - 1n, 0],
    ['negative nanos', 1709210096n, -1],
    ['nanos of a second or more', 1709210096n, 1_000_000_000],
  ];
  for (const [name, seconds, nanos] of refused) {
    it(`refuses ${name} with INVALID_ARGUMENT naming the field`, async () => {
      const insert = await expectRejection(
        alice.insert({
          table: 'type_samples',
          columns: ['tenant_id', 'ts'],
          rows: [row(V.str(ACME), V.ts(seconds, nanos))],
        }),
        { code: Status.INVALID_ARGUMENT, reason: 'SLUICE_INVALID_VALUE' },
      );
      expect(insert.fields).toEqual(['rows[0].values[1]']);
      const filter = await expectRejection(
        alice.select({ table: 'type_samples', filter: eq('ts_local', V.ts(seconds, nanos)) }),
        { code: Status.INVALID_ARGUMENT, reason: 'SLUICE_INVALID_VALUE' },
      );
      expect(filter.fields).toEqual(['filter.condition.value']);
      const update = await expectRejection(
        alice.update({
          table: 'type_samples',
          set: [{ column: 'd', value: V.ts(seconds, nanos) }],
          filter: eq('id', V.int(1)),
        }),
        { code: Status.INVALID_ARGUMENT, reason: 'SLUICE_INVALID_VALUE' },
      );
      expect(update.fields).toEqual(['set[0].value']);
    });
  }

  it('Call arguments are checked the same way, and round-trip', async () => {
    const r = await expectRejection(
      alice.call({ function: 'echo_timestamp', args: [{ name: 't', value: V.ts(10n ** 15n) }] }),
      { code: Status.INVALID_ARGUMENT, reason: 'SLUICE_INVALID_VALUE' },
    );
    expect(r.fields).toEqual(['args[0].value']);
    const ok = await alice.call({ function: 'echo_timestamp', args: [{ name: 't', value: V.ts(TS_MIN) }] });
    expect(ok.result?.rows[0]?.values[0]).toEqual(V.ts(TS_MIN));
  });
});

/** A unary call sending raw request bytes, for requests the generated encoder cannot produce. */
function rawCall(method: 'insert' | 'select', bytes: Uint8Array, token: string) {
  const def = data.DataServiceDefinition.methods[method];
  const definition = {
    call: {
      path: `/${data.DataServiceDefinition.fullName}/${def.name}`,
      requestStream: false,
      responseStream: false,
      requestSerialize: (b: Uint8Array) => Buffer.from(b),
      requestDeserialize: (b: Buffer) => b,
      responseSerialize: (b: Uint8Array) => Buffer.from(b),
      responseDeserialize: (b: Buffer) => b,
      options: {},
    },
  } as const;
  const client = createClientFactory()
    .use(errorDetailsClientMiddleware)
    .create(definition, channel, { '*': { metadata: Metadata({ authorization: `Bearer ${token}` }) } });
  return client.call(bytes);
}

/** `encoded` with the bytes of the ASCII `marker` replaced by `replacement` (same length). */
function patch(encoded: Uint8Array, marker: string, replacement: number[]): Uint8Array {
  const buf = Buffer.from(encoded);
  const at = buf.indexOf(Buffer.from(marker));
  expect(at).toBeGreaterThanOrEqual(0);
  Buffer.from(replacement).copy(buf, at);
  return buf;
}

describe('strings must be valid UTF-8', () => {
  it('an insert value with invalid UTF-8 is INVALID_ARGUMENT naming the value, and nothing is stored', async () => {
    const before = await admin.query('select count(*)::int as n from public.type_samples');
    const request = data.InsertRequest.encode(
      data.InsertRequest.fromPartial({
        table: 'type_samples',
        columns: ['tenant_id', 'label'],
        rows: [row(V.str(ACME), V.str('ok-MARK-ok'))],
      }),
    ).finish();
    const r = await expectRejection(
      rawCall('insert', patch(request, 'MARK', [0x41, 0xc3, 0x28, 0xff]), await stack.token('alice')),
      {
        code: Status.INVALID_ARGUMENT,
        reason: 'SLUICE_INVALID_UTF8',
      },
    );
    expect(r.fields).toEqual(['rows[0].values[1]']);
    const after = await admin.query('select count(*)::int as n from public.type_samples');
    expect(after.rows).toEqual(before.rows);
  });

  it('invalid UTF-8 in a name or a filter value names that field', async () => {
    const request = data.SelectRequest.encode(
      data.SelectRequest.fromPartial({
        table: 'type_samples',
        filter: {
          kind: { $case: 'and', value: { filters: [eq('label', V.str('x')), eq('label', V.str('MARK'))] } },
        },
      }),
    ).finish();
    const r = await expectRejection(
      rawCall('select', patch(request, 'MARK', [0xed, 0xa0, 0x80, 0x41]), await stack.token('alice')),
      {
        code: Status.INVALID_ARGUMENT,
        reason: 'SLUICE_INVALID_UTF8',
      },
    );
    expect(r.fields).toEqual(['filter.and.filters[1].condition.value']);
    const table = data.SelectRequest.encode(data.SelectRequest.fromPartial({ table: 'MARK' })).finish();
    const t = await expectRejection(
      rawCall('select', patch(table, 'MARK', [0x80, 0x41, 0x41, 0x41]), await stack.token('alice')),
      {
        code: Status.INVALID_ARGUMENT,
        reason: 'SLUICE_INVALID_UTF8',
      },
    );
    expect(t.fields).toEqual(['table']);
  });

  it('a real U+FFFD sent as valid UTF-8 is stored as is', async () => {
    const { id } = await insertReturning(['label'], [V.str('a\uFFFDb')]);
    expect(await stored(id, 'label')).toBe('a\uFFFDb');
  });
});

describe('MATCH text search configurations', () => {
  const match = (config: string): Filter => ({
    kind: {
      $case: 'condition',
      value: {
        column: 'title',
        op: Operator.OPERATOR_MATCH,
        value: V.str('rocket'),
        values: [],
        textSearchConfig: config,
      },
    },
  });

  for (const config of ['no_such_config', 'nope.english', 'a b', 'a.b.c', 'a.b.c.d', '"unterminated']) {
    it(`"${config}" is INVALID_ARGUMENT naming filter.condition.text_search_config`, async () => {
      const r = await expectRejection(alice.select({ table: 'posts', filter: match(config) }), {
        code: Status.INVALID_ARGUMENT,
        reason: 'SLUICE_UNKNOWN_TEXT_SEARCH_CONFIG',
      });
      expect(r.fields).toEqual(['filter.condition.text_search_config']);
    });
  }

  it('inside a Transaction and a Delete the field path is the full one', async () => {
    const inner = { kind: { $case: 'not' as const, value: match('no_such_config') } };
    const d = await expectRejection(alice.delete({ table: 'posts', filter: inner }), {
      code: Status.INVALID_ARGUMENT,
      reason: 'SLUICE_UNKNOWN_TEXT_SEARCH_CONFIG',
    });
    expect(d.fields).toEqual(['filter.not.condition.text_search_config']);
    const t = await expectRejection(
      alice.transaction({
        operations: [
          { kind: { $case: 'select', value: { table: 'posts', columns: ['id'], limit: 1 } as never } },
          { kind: { $case: 'select', value: { table: 'posts', filter: match('no_such_config') } as never } },
        ],
      }),
      { code: Status.INVALID_ARGUMENT, reason: 'SLUICE_UNKNOWN_TEXT_SEARCH_CONFIG' },
    );
    expect(t.fields).toEqual(['operations[1].select.filter.condition.text_search_config']);
  });

  it('known configurations, qualified or in any case, still work', async () => {
    for (const config of ['english', 'pg_catalog.english', 'English', '']) {
      const res = await alice.select({ table: 'posts', columns: ['id'], filter: match(config) });
      expect(res.result?.columns.map((c) => c.name)).toEqual(['id']);
    }
  });
});

describe('requests nested deeper than the protobuf decoder allows', () => {
  it('are INVALID_ARGUMENT SLUICE_FILTER_TOO_COMPLEX like other over-complex filters', async () => {
    let filter: Filter = eq('id', V.int(1));
    for (let i = 0; i < 150; i++) filter = { kind: { $case: 'not', value: filter } };
    await expectRejection(alice.select({ table: 'posts', filter }), {
      code: Status.INVALID_ARGUMENT,
      reason: 'SLUICE_FILTER_TOO_COMPLEX',
    });
    let list = V.int(1);
    for (let i = 0; i < 150; i++) list = V.list([list]);
    await expectRejection(alice.select({ table: 'type_samples', filter: eq('ints', list) }), {
      code: Status.INVALID_ARGUMENT,
      reason: 'SLUICE_FILTER_TOO_COMPLEX',
    });
  });

  it('a filter within the decoder limit but past MAX_FILTER_DEPTH names the field', async () => {
    let filter: Filter = eq('id', V.int(1));
    for (let i = 0; i < 40; i++) filter = { kind: { $case: 'not', value: filter } };
    const r = await expectRejection(alice.select({ table: 'posts', filter }), {
      code: Status.INVALID_ARGUMENT,
      reason: 'SLUICE_FILTER_TOO_COMPLEX',
    });
    expect(r.fields[0]).toMatch(/^filter(\.not){33}$/);
  });

  it('arrays nested past PostgreSQL’s 6 dimensions are INVALID_ARGUMENT, not INTERNAL', async () => {
    let list = V.int(1);
    for (let i = 0; i < 7; i++) list = V.list([list]);
    await expectRejection(
      alice.insert({ table: 'type_samples', columns: ['tenant_id', 'ints'], rows: [row(V.str(ACME), list)] }),
      { code: Status.INVALID_ARGUMENT },
    );
  });
});

describe('type names', () => {
  it('types outside pg_catalog are schema-qualified in results and DescribeSchema', async () => {
    const res = await alice.select({ table: 'type_samples', columns: ['mood', 'tags', 'i8'], limit: 1 });
    expect(res.result?.columns).toEqual([
      { name: 'mood', type: 'public.mood' },
      { name: 'tags', type: 'text[]' },
      { name: 'i8', type: 'int8' },
    ]);
    await admin.query('alter table public.type_samples add column moods public.mood[]');
    // The catalog reloads after DDL.
    for (let i = 0; ; i++) {
      const schema = await alice.describeSchema({});
      const table = schema.tables.find((t) => t.name === 'type_samples');
      const moods = table?.columns.find((c) => c.name === 'moods');
      if (moods) {
        expect(table?.columns.find((c) => c.name === 'mood')?.type).toBe('public.mood');
        expect(moods.type).toBe('public.mood[]');
        break;
      }
      if (i > 100) throw new Error('catalog did not reload');
      await new Promise((r) => setTimeout(r, 50));
    }
    const arr = await alice.select({ table: 'type_samples', columns: ['moods'], limit: 1 });
    expect(arr.result?.columns).toEqual([{ name: 'moods', type: 'public.mood[]' }]);
  });
});
