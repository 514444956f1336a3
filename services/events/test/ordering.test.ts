import { comparePositions } from '@sluice/changes';
import { events } from '@sluice/proto';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ACME, appendWindow, DELIVERY_ORDER, type EventsStack, startEventsStack, USERS } from './helpers';
import {
  collectStream,
  decodePosition,
  recordObject,
  type StreamCollector,
  sleepMs,
  waitFor,
} from './stream-collector';

// Changes are delivered by change window, then id (sluice.change_window): as soon as their
// transaction commits, a transaction that took a lower id but commits later is never skipped,
// and a change that depends on another (same row) always comes after it.

let stack: EventsStack;
beforeAll(async () => {
  stack = await startEventsStack({ EVENTS_HEARTBEAT_MS: '200' });
});
afterAll(async () => {
  await stack?.close();
});

async function superuser(): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: stack.db.url });
  await client.connect();
  return client;
}

/** A service_role subscription to posts from now, resolved once it is live (first heartbeat). */
async function subscribeFromNow(): Promise<StreamCollector> {
  const client = stack.eventsClient(await stack.token('service'));
  const stream = collectStream(client, {
    tables: [{ table: 'posts', columns: ['id', 'title', 'view_count'] }],
    start: { $case: 'fromNow', value: true },
  });
  await waitFor(() => stream.messages.length > 0 || stream.ended, { what: 'the first heartbeat' });
  expect(stream.error).toBeUndefined();
  return stream;
}

const INSERT = `insert into public.posts (tenant_id, author_id, title) values ($1, $2, $3) returning id`;

const titleOf = (e: events.ChangeEvent) => recordObject(e.columns, e.record).title as string;

it('delivers B as soon as it commits while A (lower id) is still open, then A, once each', async () => {
  const stream = await subscribeFromNow();
  const a = await superuser();
  const b = await superuser();
  try {
    await a.query('begin');
    await a.query(INSERT, [ACME, USERS.alice, 'order-A']);
    await b.query('begin');
    await b.query(INSERT, [ACME, USERS.alice, 'order-B']);
    await b.query('commit');

    const log = await a.query<{ title: string; id: string }>(
      `select c.record->>'title' as title, c.id::text from sluice.change_log c
        where c.record->>'title' in ('order-A', 'order-B') order by c.id`,
    );
    // A holds the lower change_log id (read through A's own snapshot: it sees its own row and B's).
    expect(log.rows.map((r) => r.title)).toEqual(['order-A', 'order-B']);

    // B does not wait for A: an open transaction holds back nothing but its own changes.
    await waitFor(() => stream.changes.length >= 1, { what: 'B' });
    await sleepMs(300);
    expect(stream.changes.map(titleOf)).toEqual(['order-B']);

    await a.query('commit');
    await waitFor(() => stream.changes.length >= 2, { what: 'A' });
    await sleepMs(300); // anything delivered twice would arrive by now
    expect(stream.changes.map(titleOf)).toEqual(['order-B', 'order-A']);
    expect(stream.changes.map((e) => e.operation)).toEqual([
      events.Operation.OPERATION_INSERT,
      events.Operation.OPERATION_INSERT,
    ]);
    const [pb, pa] = stream.changes.map((e) => decodePosition(e.position));
    expect(pa && pb && comparePositions(pb, pa)).toBe(-1);
    expect(pa && pb && pa.id < pb.id).toBe(true); // the lower id, in a later window
    expect(stream.error).toBeUndefined();
  } finally {
    await stream.stop();
    await a.end();
    await b.end();
  }
});

it('delivers every committed change of concurrent writers exactly once, in increasing positions, and no rolled-back one', async () => {
  const prefix = `rnd-${Date.now()}`;
  const stream = await subscribeFromNow();
  const WRITERS = 6;
  const TRANSACTIONS = 30;
  const rolledBackTitles = new Set<string>();
  const committedTitles = new Set<string>();
  let rollbacks = 0;

  async function writer(w: number): Promise<void> {
    const client = await superuser();
    const mine: string[] = []; // ids of this writer's committed posts
    try {
      for (let t = 0; t < TRANSACTIONS; t++) {
        const rollback = Math.random() < 0.2;
        const titles: string[] = [];
        const inserted: string[] = [];
        await client.query('begin');
        const ops = 1 + Math.floor(Math.random() * 3);
        for (let i = 0; i < ops; i++) {
          const title = `${prefix} w${w} t${t} i${i}`;
          titles.push(title);
          if (mine.length > 0 && Math.random() < 0.4) {
            const id = mine[Math.floor(Math.random() * mine.length)];
            await client.query(
              'update public.posts set title = $1, view_count = view_count + 1 where id = $2',
              [title, id],
            );
          } else {
            const { rows } = await client.query<{ id: string }>(INSERT, [ACME, USERS.dave, title]);
            inserted.push(String(rows[0]?.id));
          }
          if (Math.random() < 0.5) await sleepMs(Math.floor(Math.random() * 15));
        }
        if (rollback) {
          await client.query('rollback');
          rollbacks++;
          for (const title of titles) rolledBackTitles.add(title);
        } else {
          await client.query('commit');
          for (const title of titles) committedTitles.add(title);
          mine.push(...inserted);
        }
      }
    } finally {
      await client.end();
    }
  }

  const started = Date.now();
  try {
    await Promise.all(Array.from({ length: WRITERS }, (_, w) => writer(w)));
    expect(rollbacks).toBeGreaterThan(0);

    const db = await superuser();
    let expected: { id: string; title: string }[];
    try {
      await appendWindow(db);
      const { rows } = await db.query<{ id: string; title: string }>(
        `select c.id::text, c.record->>'title' as title from sluice.change_log c
          where c."table" = 'posts' and c.record->>'title' like $1 order by ${DELIVERY_ORDER}`,
        [`${prefix} %`],
      );
      expected = rows;
    } finally {
      await db.end();
    }
    // The log holds exactly the committed writes (the test's own bookkeeping agrees with it).
    expect(new Set(expected.map((r) => r.title))).toEqual(committedTitles);
    expect(expected.length).toBe(committedTitles.size);

    const ours = () => stream.changes.filter((e) => titleOf(e).startsWith(`${prefix} `));
    await waitFor(() => ours().length >= expected.length || stream.ended, {
      timeoutMs: 15_000,
      what: `${expected.length} changes`,
    });
    await sleepMs(300); // duplicates, if any, would arrive by now
    expect(stream.error).toBeUndefined();

    const received = ours().map((e) => {
      const p = decodePosition(e.position);
      return { id: p.id.toString(), title: titleOf(e) };
    });
    // Exactly once, in (window, id) order: the same list as the log's.
    expect(received).toEqual(expected);
    for (const e of stream.changes) expect(rolledBackTitles.has(titleOf(e))).toBe(false);

    // Every position in the stream (changes and heartbeats) moves forward; changes strictly.
    let previous: ReturnType<typeof decodePosition> | undefined;
    for (const m of stream.messages) {
      const v = m.message;
      if (v?.$case !== 'change' && v?.$case !== 'heartbeat') continue;
      const p = decodePosition(v.value.position);
      if (previous)
        expect(comparePositions(p, previous)).toBeGreaterThanOrEqual(v.$case === 'change' ? 1 : 0);
      previous = p;
    }
    expect(Date.now() - started).toBeLessThan(20_000);
  } finally {
    await stream.stop();
  }
}, 30_000);

// xid order is not commit order: a transaction that took its xid early can update a row after a
// later-xid transaction updated it and committed. Ordering by (xid, id) delivered the two updates
// backwards; windows and ids deliver them as made.
it('delivers two updates of one row in the order they were made, even when the later one has the lower xid', async () => {
  const stream = await subscribeFromNow();
  const a = await superuser();
  const b = await superuser();
  try {
    const { rows } = await a.query<{ id: string }>(INSERT, [ACME, USERS.alice, 'row-v0']);
    const id = rows[0]?.id;
    // A takes its xid first (a write elsewhere), B then updates the row and commits, then A
    // updates the same row (on top of B's version) and commits: A's update comes second.
    await a.query('begin');
    await a.query(INSERT, [ACME, USERS.alice, 'row-other']);
    await b.query(`update public.posts set title = 'row-v1-by-B' where id = $1`, [id]);
    await a.query(`update public.posts set title = 'row-v2-by-A' where id = $1`, [id]);
    await a.query('commit');
    const xids = await b.query<{ title: string; xid: string }>(
      `select c.record->>'title' as title, c.xid::text from sluice.change_log c
        where c.record->>'title' in ('row-v1-by-B', 'row-v2-by-A') order by c.id`,
    );
    expect(BigInt(xids.rows[1]?.xid ?? 0) < BigInt(xids.rows[0]?.xid ?? 0)).toBe(true); // A's xid is lower

    await waitFor(() => stream.changes.length >= 4, { what: 'four changes' });
    const updates = stream.changes.filter((e) => e.operation === events.Operation.OPERATION_UPDATE);
    // The last update a client applies must leave the row as the table has it.
    expect(updates.map(titleOf)).toEqual(['row-v1-by-B', 'row-v2-by-A']);
  } finally {
    await stream.stop();
    await a.end();
    await b.end();
  }
});
