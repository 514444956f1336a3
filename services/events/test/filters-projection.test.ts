import { events, type Filter, Operator, type Value } from '@sluice/proto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ACME,
  type DataClient,
  type EventsClient,
  type EventsStack,
  startEventsStack,
  USERS,
} from './helpers';
import { and, cond, eq, not, OpenStream, or, plain, recordOf, V } from './open-stream';

// A subscription's filter must select exactly the rows the data service's Select selects with the
// same filter. Each stream's filter is `or(F, title = SENTINEL)`: the sentinel row, inserted last,
// tells that every earlier insert has been dispatched to the stream, and no other row has that
// title, so the other rows received are exactly those matching F.

const SENTINEL = 'filter-sentinel';
const dec = (s: string): Value => ({ kind: { $case: 'decimalValue', value: s } });
const ts = (iso: string): Value => ({
  kind: { $case: 'timestampValue', value: { seconds: BigInt(Date.parse(iso) / 1000), nanos: 0 } },
});
const ints = (...n: number[]) => n.map((x) => V.int(x));

const FILTERS: Record<string, Filter> = {
  'eq status': eq('status', V.str('published')),
  'neq status': cond('status', Operator.OPERATOR_NEQ, V.str('draft')),
  'lt view_count': cond('view_count', Operator.OPERATOR_LT, V.int(100)),
  'gte view_count': cond('view_count', Operator.OPERATOR_GTE, V.int(100)),
  'lte/gt view_count': and(
    cond('view_count', Operator.OPERATOR_GT, V.int(5)),
    cond('view_count', Operator.OPERATOR_LTE, V.int(500)),
  ),
  'in view_count': cond('view_count', Operator.OPERATOR_IN, undefined, ints(0, 5, 500)),
  'in status': cond('status', Operator.OPERATOR_IN, undefined, [V.str('draft'), V.str('archived')]),
  'is null score': cond('score', Operator.OPERATOR_IS, V.null()),
  'not is null score': not(cond('score', Operator.OPERATOR_IS, V.null())),
  // NULL semantics: score <> 1.5 is unknown for a null score, so those rows do not match.
  'neq numeric (nulls)': cond('score', Operator.OPERATOR_NEQ, dec('1.5')),
  'gt numeric': cond('score', Operator.OPERATOR_GT, dec('1.0')),
  'not neq numeric': not(cond('score', Operator.OPERATOR_NEQ, dec('1.5'))),
  'published_at gte': cond('published_at', Operator.OPERATOR_GTE, ts('2024-06-01T00:00:00Z')),
  'and(eq, gte)': and(eq('status', V.str('published')), cond('view_count', Operator.OPERATOR_GTE, V.int(50))),
  'or(eq, lt)': or(eq('status', V.str('archived')), cond('view_count', Operator.OPERATOR_LT, V.int(10))),
  'not(or(eq, is null))': not(
    or(eq('status', V.str('draft')), cond('published_at', Operator.OPERATOR_IS, V.null())),
  ),
  'and() is true': and(),
  'or() is false': or(),
};

let stack: EventsStack;
let admin: pg.Client;
let service: EventsClient;
let data: DataClient;

beforeAll(async () => {
  stack = await startEventsStack({ EVENTS_HEARTBEAT_MS: '100' });
  admin = new pg.Client({ connectionString: stack.db.url });
  await admin.connect();
  service = stack.eventsClient(await stack.token('service'));
  data = stack.dataClient(await stack.token('service'));
});

afterAll(async () => {
  await admin?.end();
  await stack?.close();
});

describe('filters behave like Select', () => {
  const streams = new Map<string, OpenStream>();
  const inserted: bigint[] = [];

  beforeAll(async () => {
    for (const [name, filter] of Object.entries(FILTERS)) {
      streams.set(
        name,
        new OpenStream(service, {
          tables: [
            {
              table: 'posts',
              operations: [events.Operation.OPERATION_INSERT],
              filter: or(filter, eq('title', V.str(SENTINEL))),
              columns: ['id', 'title'],
            },
          ],
          start: { $case: 'fromNow', value: true },
        }),
      );
    }
    await Promise.all([...streams.values()].map((s) => s.ready()));
    const statuses = ['draft', 'published', 'archived'];
    const views = [0, 5, 10, 50, 99, 100, 500, 1000];
    for (let i = 0; i < 30; i++) {
      const r = await admin.query<{ id: string }>(
        `insert into public.posts (tenant_id, author_id, title, status, view_count, score, published_at)
         values ($1, $2, $3, $4, $5, $6, $7) returning id::text`,
        [
          ACME,
          USERS.alice,
          `p${i}`,
          statuses[i % 3],
          views[(i * 3) % 8],
          i % 4 === 0 ? null : ((i % 5) * 0.5).toFixed(1),
          i % 5 === 0 ? null : i % 2 === 0 ? '2024-03-01T00:00:00Z' : '2024-09-01T00:00:00Z',
        ],
      );
      inserted.push(BigInt(r.rows[0]?.id ?? '0'));
    }
    await admin.query(`insert into public.posts (tenant_id, author_id, title) values ($1, $2, $3)`, [
      ACME,
      USERS.alice,
      SENTINEL,
    ]);
    await Promise.all(
      [...streams.entries()].map(([name, s]) =>
        s.waitFor(
          (x) => x.changes.some((e) => recordOf(e)?.title === SENTINEL),
          15_000,
          `sentinel of ${name}`,
        ),
      ),
    );
  });
  afterAll(async () => {
    await Promise.all([...streams.values()].map((s) => s.cancel()));
  });

  for (const name of Object.keys(FILTERS)) {
    it(name, async () => {
      const filter = FILTERS[name] as Filter;
      const selected = await data.select({
        table: 'posts',
        columns: ['id'],
        filter: and(filter, cond('id', Operator.OPERATOR_IN, undefined, inserted.map(V.int))),
        limit: 1000,
      });
      const expected = (selected.result?.rows ?? []).map((r) => plain(r.values[0]) as bigint).sort(cmp);
      const received = (streams.get(name) as OpenStream).changes
        .map((e) => recordOf(e) ?? {})
        .filter((r) => r.title !== SENTINEL)
        .map((r) => r.id as bigint)
        .sort(cmp);
      expect(received).toEqual(expected);
      // Every id once: no duplicates in the stream.
      expect(new Set(received).size).toBe(received.length);
    });
  }

  it('the filters discriminate (not all-or-nothing)', () => {
    const sizes = new Set([...streams.values()].map((s) => s.changes.length));
    expect(sizes.size).toBeGreaterThan(5);
    expect((streams.get('or() is false') as OpenStream).changes).toHaveLength(1);
    expect((streams.get('and() is true') as OpenStream).changes).toHaveLength(31);
  });
});

const cmp = (a: bigint, b: bigint) => (a < b ? -1 : a > b ? 1 : 0);

describe('projection and operations', () => {
  it('events carry exactly the projected columns; changed_columns only projected ones', async () => {
    const s = new OpenStream(service, {
      tables: [{ table: 'posts', columns: ['id', 'title'] }],
      start: { $case: 'fromNow', value: true },
    });
    await s.ready();
    try {
      const r = await admin.query<{ id: string }>(
        `insert into public.posts (tenant_id, author_id, title, body) values ($1, $2, 'proj', 'b1') returning id::text`,
        [ACME, USERS.alice],
      );
      const id = BigInt(r.rows[0]?.id ?? '0');
      await admin.query(`update public.posts set title = 'proj 2', body = 'b2' where id = $1`, [id]);
      await admin.query(`update public.posts set body = 'b3', view_count = 7 where id = $1`, [id]);
      await admin.query('delete from public.posts where id = $1', [id]);
      await s.waitFor((x) => x.changes.length >= 4, 10_000, 'four changes');
      const [ins, up1, up2, del] = s.changes;
      for (const e of s.changes) {
        expect(e.columns.map((c) => c.name)).toEqual(['id', 'title']);
        expect(e.record?.values).toHaveLength(2);
      }
      expect(ins?.operation).toBe(events.Operation.OPERATION_INSERT);
      expect(recordOf(ins)).toEqual({ id, title: 'proj' });
      expect(ins?.changedColumns).toEqual([]);
      expect(up1?.operation).toBe(events.Operation.OPERATION_UPDATE);
      expect(recordOf(up1)).toEqual({ id, title: 'proj 2' });
      // body changed too, but is not projected. (updated_at/updated_by come from the audit trigger.)
      expect(up1?.changedColumns).toEqual(['title']);
      expect(recordOf(up1, 'oldRecord')).toEqual({ id, title: 'proj' });
      expect(up2?.operation).toBe(events.Operation.OPERATION_UPDATE);
      expect(recordOf(up2)).toEqual({ id, title: 'proj 2' });
      expect(up2?.changedColumns).toEqual([]);
      expect(del?.operation).toBe(events.Operation.OPERATION_DELETE);
      expect(recordOf(del, 'oldRecord')).toEqual({ id, title: 'proj 2' });
      expect(s.changes).toHaveLength(4);
    } finally {
      await s.cancel();
    }
  });

  it('operations: only UPDATE', async () => {
    const s = new OpenStream(service, {
      tables: [{ table: 'posts', operations: [events.Operation.OPERATION_UPDATE], columns: ['id', 'title'] }],
      start: { $case: 'fromNow', value: true },
    });
    await s.ready();
    try {
      const r = await admin.query<{ id: string }>(
        `insert into public.posts (tenant_id, author_id, title) values ($1, $2, 'ops') returning id::text`,
        [ACME, USERS.alice],
      );
      const id = BigInt(r.rows[0]?.id ?? '0');
      await admin.query(`update public.posts set title = 'ops 2' where id = $1`, [id]);
      await admin.query('delete from public.posts where id = $1', [id]);
      await admin.query(`update public.posts set title = 'ops sentinel' where id = 1`);
      await s.waitFor(
        (x) => x.changes.some((e) => recordOf(e)?.title === 'ops sentinel'),
        10_000,
        'sentinel',
      );
      expect(s.changes.map((e) => [e.operation, recordOf(e)?.title])).toEqual([
        [events.Operation.OPERATION_UPDATE, 'ops 2'],
        [events.Operation.OPERATION_UPDATE, 'ops sentinel'],
      ]);
    } finally {
      await s.cancel();
    }
  });

  it('a filter on a column outside the projection still applies', async () => {
    const s = new OpenStream(service, {
      tables: [{ table: 'posts', columns: ['id'], filter: eq('status', V.str('archived')) }],
      start: { $case: 'fromNow', value: true },
    });
    await s.ready();
    try {
      const r = await admin.query<{ id: string; status: string }>(
        `insert into public.posts (tenant_id, author_id, title, status)
         values ($1, $2, 'x', 'draft'), ($1, $2, 'y', 'archived') returning id::text, status`,
        [ACME, USERS.alice],
      );
      const archived = BigInt(r.rows.find((x) => x.status === 'archived')?.id ?? '0');
      await admin.query(
        `insert into public.posts (tenant_id, author_id, title, status) values ($1, $2, 'z', 'archived')`,
        [ACME, USERS.alice],
      );
      await s.waitFor((x) => x.changes.length >= 2, 10_000, 'two archived inserts');
      expect(recordOf(s.changes[0])).toEqual({ id: archived });
      expect(s.changes).toHaveLength(2);
    } finally {
      await s.cancel();
    }
  });
});
