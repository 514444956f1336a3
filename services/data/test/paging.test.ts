import { randomUUID } from 'node:crypto';
import { data, type Row } from '@sluice/proto';
import { Status } from 'nice-grpc';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectRejection } from './expect-rejection';
import { ACME, type DataClient, startStack, type TestStack } from './helpers';
import { eq, records, row, type SelectReq, V } from './wire-values';

const { SortDirection: Dir, NullsOrder: Nulls } = data;

let stack: TestStack;
let service: DataClient;
let alice: DataClient;
let su: pg.Client;

beforeAll(async () => {
  stack = await startStack();
  service = stack.client(await stack.token('service'));
  alice = stack.client(await stack.token('alice'));
  su = new pg.Client({ connectionString: stack.db.url });
  await su.connect();
});
afterAll(async () => {
  await su?.end();
  await stack?.close();
});

/** Inserts rows into type_samples tagged with a fresh tenant_id (the data set's id); returns their ids. */
async function insertSamples(columns: string[], rows: Row[], dataset = randomUUID()) {
  const res = await service.insert({
    table: 'type_samples',
    columns: ['tenant_id', ...columns],
    rows: rows.map((r) => row(V.str(dataset), ...r.values)),
    returning: ['id'],
  });
  return { dataset, ids: records(res.result).map((r) => r.id as bigint) };
}

/** Follows page tokens to the end, calling `between` after each page. */
async function pageAll(
  client: DataClient,
  req: SelectReq,
  between: (page: Record<string, unknown>[]) => Promise<void> = async () => {},
) {
  const pages: Record<string, unknown>[][] = [];
  let pageToken = '';
  for (let guard = 0; guard < 1000; guard++) {
    const res = await client.select({ table: 'type_samples', ...req, pageToken });
    const page = records(res.result);
    pages.push(page);
    if (!res.nextPageToken) break;
    pageToken = res.nextPageToken;
    await between(page);
  }
  return pages;
}

describe('keyset paging', () => {
  it('returns every row exactly once while rows are inserted before and after the cursor', async () => {
    // Pairs of equal i4 values, so ties are broken by the primary key.
    const { dataset, ids: initial } = await insertSamples(
      ['i4'],
      Array.from({ length: 40 }, (_, k) => row(V.int(Math.floor(k / 2) * 10))),
    );
    const ahead: bigint[] = [];
    const behind: bigint[] = [];
    const pages = await pageAll(
      alice,
      {
        columns: ['id', 'i4'],
        filter: eq('tenant_id', V.str(dataset)),
        order: [{ column: 'i4' }],
        limit: 7,
      },
      async (page) => {
        const cursor = page.at(-1)?.i4 as bigint;
        const { ids } = await insertSamples(
          ['i4'],
          [
            row(V.int(cursor - 5n)), // behind the cursor: never shown
            row(V.int(cursor)), // same key, larger id: ahead of the cursor
            row(V.int(cursor + 3n)), // ahead of the cursor
            row(V.int(1000n + cursor)), // far ahead
          ],
          dataset,
        );
        behind.push(ids[0] as bigint);
        ahead.push(...(ids.slice(1) as bigint[]));
      },
    );
    const seen = pages.flat().map((r) => r.id as bigint);
    expect(pages.length).toBeGreaterThan(5);
    expect(new Set(seen).size).toBe(seen.length); // no row twice
    for (const id of initial) expect(seen).toContain(id); // none skipped
    for (const id of ahead) expect(seen).toContain(id); // rows inserted ahead show up
    for (const id of behind) expect(seen).not.toContain(id);
    expect(seen.length).toBe(initial.length + ahead.length);
    // And the concatenated pages are in order.
    const keys = pages.flat().map((r) => [r.i4 as bigint, r.id as bigint] as const);
    const sorted = [...keys].sort((a, b) => (a[0] === b[0] ? Number(a[1] - b[1]) : Number(a[0] - b[0])));
    expect(keys).toEqual(sorted);
  });

  it('orders by several columns, asc/desc, nulls first/last, exactly like PostgreSQL', async () => {
    // Few distinct values and many nulls, so every key position has ties and nulls.
    const i2s = [null, 1, 2, 2, 3, null];
    const f8s = [null, -1.5, 0, 2.25];
    const labels = [null, 'a', 'B', 'b', 'a b', ''];
    const days = [null, '2024-02-29', '1999-12-31'];
    const rows = Array.from({ length: 45 }, (_, k) => {
      const i2 = i2s[k % i2s.length];
      const f8 = f8s[(k * 7) % f8s.length];
      const label = labels[(k * 5) % labels.length];
      const d = days[(k * 11) % days.length];
      return row(
        i2 === null || i2 === undefined ? V.null() : V.int(i2),
        f8 === null || f8 === undefined ? V.null() : V.double(f8),
        label === null || label === undefined ? V.null() : V.str(label),
        d === null || d === undefined ? V.null() : V.str(d),
        V.ts(1_700_000_000n + BigInt(k % 4), (k % 3) * 1000),
      );
    });
    const { dataset } = await insertSamples(['i2', 'f8', 'label', 'd', 'ts'], rows);

    const cases: { order: data.OrderBy[]; sql: string }[] = [
      {
        order: [
          { column: 'i2', direction: Dir.SORT_DIRECTION_DESC, nulls: Nulls.NULLS_ORDER_LAST },
          { column: 'f8', direction: Dir.SORT_DIRECTION_ASC, nulls: Nulls.NULLS_ORDER_FIRST },
        ],
        sql: 'i2 desc nulls last, f8 asc nulls first, id',
      },
      {
        order: [
          { column: 'i2', direction: Dir.SORT_DIRECTION_DESC, nulls: Nulls.NULLS_ORDER_UNSPECIFIED },
          { column: 'label', direction: Dir.SORT_DIRECTION_ASC, nulls: Nulls.NULLS_ORDER_UNSPECIFIED },
        ],
        sql: 'i2 desc, label asc, id',
      },
      {
        order: [
          { column: 'd', direction: Dir.SORT_DIRECTION_ASC, nulls: Nulls.NULLS_ORDER_FIRST },
          { column: 'label', direction: Dir.SORT_DIRECTION_DESC, nulls: Nulls.NULLS_ORDER_LAST },
          { column: 'f8', direction: Dir.SORT_DIRECTION_DESC, nulls: Nulls.NULLS_ORDER_FIRST },
        ],
        sql: 'd asc nulls first, label desc nulls last, f8 desc nulls first, id',
      },
      {
        order: [
          { column: 'ts', direction: Dir.SORT_DIRECTION_DESC, nulls: Nulls.NULLS_ORDER_LAST },
          { column: 'id', direction: Dir.SORT_DIRECTION_DESC, nulls: Nulls.NULLS_ORDER_UNSPECIFIED },
        ],
        sql: 'ts desc nulls last, id desc',
      },
    ];
    for (const c of cases) {
      // node-postgres returns int8 as a string.
      const expected = await su.query<{ id: string }>(
        `select id from public.type_samples where tenant_id = $1 order by ${c.sql}`,
        [dataset],
      );
      const pages = await pageAll(service, {
        columns: ['id'],
        filter: eq('tenant_id', V.str(dataset)),
        order: c.order,
        limit: 4,
      });
      expect(pages.length, c.sql).toBe(Math.ceil(45 / 4));
      expect(
        pages.flat().map((r) => String(r.id)),
        c.sql,
      ).toEqual(expected.rows.map((r) => r.id));
    }
  });
});

describe('page tokens are bound to their query', () => {
  async function firstToken(req: SelectReq) {
    const res = await alice.select({ table: 'posts', columns: ['id'], limit: 2, ...req });
    expect(res.nextPageToken).not.toBe('');
    return res.nextPageToken;
  }

  it('a token used with another filter, order or table is SLUICE_PAGE_TOKEN_MISMATCH', async () => {
    const token = await firstToken({ filter: eq('status', V.str('draft')) });
    const mismatch = { code: Status.INVALID_ARGUMENT, reason: 'SLUICE_PAGE_TOKEN_MISMATCH' };
    const other = await expectRejection(
      alice.select({ table: 'posts', limit: 2, filter: eq('status', V.str('published')), pageToken: token }),
      mismatch,
    );
    expect(other.fields).toEqual(['page_token']);
    await expectRejection(alice.select({ table: 'posts', limit: 2, pageToken: token }), mismatch);
    await expectRejection(
      alice.select({
        table: 'posts',
        limit: 2,
        filter: eq('status', V.str('draft')),
        order: [{ column: 'id', direction: Dir.SORT_DIRECTION_DESC }],
        pageToken: token,
      }),
      mismatch,
    );
    // Same (empty) filter and default order, other table.
    await expectRejection(alice.select({ table: 'type_samples', pageToken: await firstToken({}) }), mismatch);
    // The same query continues fine, with other columns and limit (not part of the shape).
    const ok = await alice.select({
      table: 'posts',
      columns: ['id', 'status'],
      limit: 100,
      filter: eq('status', V.str('draft')),
      pageToken: token,
    });
    expect(records(ok.result).every((r) => r.status === 'draft')).toBe(true);
    expect(ok.nextPageToken).toBe('');
  });

  it('a garbage or tampered token is SLUICE_INVALID_PAGE_TOKEN', async () => {
    const invalid = { code: Status.INVALID_ARGUMENT, reason: 'SLUICE_INVALID_PAGE_TOKEN' };
    await expectRejection(alice.select({ table: 'posts', pageToken: 'not a token!' }), invalid);
    await expectRejection(
      alice.select({ table: 'posts', pageToken: Buffer.from('{"v":1}').toString('base64url') }),
      invalid,
    );
    const token = await firstToken({});
    const body = JSON.parse(Buffer.from(token, 'base64url').toString());
    const wrongWidth = Buffer.from(JSON.stringify({ ...body, k: [...body.k, '1'] })).toString('base64url');
    await expectRejection(alice.select({ table: 'posts', pageToken: wrongWidth }), invalid);
    // A key that is not a value of the key's type is refused by PostgreSQL as a bad value.
    const badKey = Buffer.from(JSON.stringify({ ...body, k: ['abc'] })).toString('base64url');
    await expectRejection(alice.select({ table: 'posts', pageToken: badKey }), {
      code: Status.INVALID_ARGUMENT,
      reason: 'SLUICE_INVALID_VALUE',
    });
    // Streams take no tokens.
    await expectRejection(
      (async () => {
        for await (const _ of alice.selectStream({ query: { table: 'posts', pageToken: token } })) {
          // drain
        }
      })(),
      invalid,
    );
  });

  it('a token with an offset is INVALID_ARGUMENT', async () => {
    const token = await firstToken({});
    const r = await expectRejection(alice.select({ table: 'posts', pageToken: token, offset: 1 }), {
      code: Status.INVALID_ARGUMENT,
      reason: 'SLUICE_PAGE_TOKEN_WITH_OFFSET',
    });
    expect(r.fields).toEqual(['offset']);
  });
});

describe('counts', () => {
  it('exact counts the rows the caller can see, whatever the limit', async () => {
    const res = await alice.select({
      table: 'posts',
      limit: 1,
      filter: eq('tenant_id', V.str(ACME)),
      count: data.CountMode.COUNT_MODE_EXACT,
    });
    expect(res.count).toBe(10n);
    expect(res.result?.rows.length).toBe(1);
    const anon = await stack
      .client()
      .select({ table: 'posts', limit: 1, count: data.CountMode.COUNT_MODE_EXACT });
    expect(anon.count).toBe(8n);
    const none = await alice.select({ table: 'posts', limit: 1 });
    expect(none.count).toBeUndefined();
  });

  it('planned is the planner estimate; estimated is exact below the threshold', async () => {
    const { dataset } = await insertSamples(
      ['i4'],
      Array.from({ length: 3000 }, (_, k) => row(V.int(k))),
    );
    await su.query('analyze public.type_samples');
    const filter = eq('tenant_id', V.str(dataset));
    const planned = await service.select({
      table: 'type_samples',
      filter,
      limit: 1,
      count: data.CountMode.COUNT_MODE_PLANNED,
    });
    expect(planned.count).toBeDefined();
    const p = Number(planned.count);
    expect(p).toBeGreaterThan(3000 * 0.5);
    expect(p).toBeLessThan(3000 * 1.5);
    const estimated = await service.select({
      table: 'type_samples',
      filter,
      limit: 1,
      count: data.CountMode.COUNT_MODE_ESTIMATED,
    });
    expect(estimated.count).toBe(3000n); // estimate below 10,000: counted exactly
    // A small count, on a filter the planner knows little about, is exact too.
    const few = await service.select({
      table: 'type_samples',
      filter: eq('i4', V.int(7)),
      limit: 1,
      count: data.CountMode.COUNT_MODE_ESTIMATED,
    });
    const exact = await su.query('select count(*)::int as n from public.type_samples where i4 = 7');
    expect(few.count).toBe(BigInt(exact.rows[0].n));
  });

  it('estimated above the threshold is the planner estimate', async () => {
    const small = await startStack({ COUNT_ESTIMATE_THRESHOLD: '5' });
    try {
      const client = small.client(await small.token('service'));
      const planned = await client.select({
        table: 'posts',
        limit: 1,
        count: data.CountMode.COUNT_MODE_PLANNED,
      });
      const estimated = await client.select({
        table: 'posts',
        limit: 1,
        count: data.CountMode.COUNT_MODE_ESTIMATED,
      });
      expect(planned.count).toBeGreaterThanOrEqual(5n);
      expect(estimated.count).toBe(planned.count);
    } finally {
      await small.close();
    }
  });
});

describe('hard row cap', () => {
  it('MAX_ROWS caps any limit and still hands out a next page token', async () => {
    const capped = await startStack({ MAX_ROWS: '5' });
    try {
      const client = capped.client(await capped.token('service'));
      const first = await client.select({ table: 'posts', columns: ['id'], limit: 100 });
      expect(records(first.result).map((r) => r.id)).toEqual([1n, 2n, 3n, 4n, 5n]);
      expect(first.nextPageToken).not.toBe('');
      const second = await client.select({
        table: 'posts',
        columns: ['id'],
        limit: 100,
        pageToken: first.nextPageToken,
      });
      expect(records(second.result).map((r) => r.id)).toEqual([6n, 7n, 8n, 9n, 10n]);
      const byDefault = await client.select({ table: 'posts', columns: ['id'] });
      expect(byDefault.result?.rows.length).toBe(5);
      expect(byDefault.nextPageToken).not.toBe('');
    } finally {
      await capped.close();
    }
  });
});

describe('SelectStream', () => {
  let bulk: string;
  const TOTAL = 5000;

  beforeAll(async () => {
    bulk = randomUUID();
    // One Insert of 5,000 rows as service_role (10,000 parameters).
    const res = await service.insert({
      table: 'type_samples',
      columns: ['tenant_id', 'i4', 'label'],
      rows: Array.from({ length: TOTAL }, (_, k) => row(V.str(bulk), V.int(k + 1), V.str(`row ${k + 1}`))),
    });
    expect(res.affected).toBe(BigInt(TOTAL));
  });

  async function collect(chunkSize: number, req: SelectReq = {}) {
    const messages: data.SelectStreamResponse[] = [];
    for await (const msg of alice.selectStream({
      query: {
        table: 'type_samples',
        columns: ['i4', 'label'],
        filter: eq('tenant_id', V.str(bulk)),
        order: [{ column: 'i4' }],
        ...req,
      },
      chunkSize,
    })) {
      messages.push(msg);
    }
    return messages;
  }

  for (const chunkSize of [700, 500]) {
    it(`streams all ${TOTAL} rows in chunks of ${chunkSize}, columns in the first message only`, async () => {
      const messages = await collect(chunkSize);
      expect(messages[0]?.columns).toEqual([
        { name: 'i4', type: 'int4' },
        { name: 'label', type: 'text' },
      ]);
      expect(messages.slice(1).every((m) => m.columns.length === 0)).toBe(true);
      const sizes = messages.map((m) => m.rows.length);
      const full = Math.floor(TOTAL / chunkSize);
      const rest = TOTAL % chunkSize;
      expect(sizes).toEqual([...Array(full).fill(chunkSize), ...(rest ? [rest] : [])]);
      const i4s = messages.flatMap((m) => m.rows.map((r) => r.values[0]?.kind?.value));
      expect(i4s).toEqual(Array.from({ length: TOTAL }, (_, k) => BigInt(k + 1)));
      const last = messages.at(-1)?.rows.at(-1)?.values[1]?.kind?.value;
      expect(last).toBe(`row ${TOTAL}`);
    });
  }

  it('uses the server default chunk size and honours limit and offset', async () => {
    const all = await collect(0);
    expect(all.map((m) => m.rows.length)).toEqual(Array(TOTAL / 500).fill(500));
    const some = await collect(100, { limit: 250, offset: 10 });
    expect(some.map((m) => m.rows.length)).toEqual([100, 100, 50]);
    expect(some[0]?.rows[0]?.values[0]?.kind?.value).toBe(11n);
  });

  it('an empty result is one message with the columns and no rows', async () => {
    const messages = await collect(100, { filter: eq('tenant_id', V.str(randomUUID())) });
    expect(messages.length).toBe(1);
    expect(messages[0]?.columns.map((c) => c.name)).toEqual(['i4', 'label']);
    expect(messages[0]?.rows).toEqual([]);
  });
});
