import { comparePositions } from '@sluice/changes';
import { events } from '@sluice/proto';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ACME, appendWindow, type EventsStack, GLOBEX, startEventsStack, USERS } from './helpers';
import {
  collectStream,
  decodePosition,
  recordObject,
  type StreamCollector,
  sleepMs,
  waitFor,
} from './stream-collector';

// Snapshot-then-changes while writers run: the snapshot rows plus the changes after them
// rebuild the table exactly. Each change is applied strictly — an UPDATE or DELETE must find the
// row as its old record says, an INSERT must find no row — so a change delivered twice or
// missed across the snapshot boundary fails the test rather than being absorbed.

let stack: EventsStack;
beforeAll(async () => {
  stack = await startEventsStack({ EVENTS_HEARTBEAT_MS: '200' });
});
afterAll(async () => {
  await stack?.close();
});

const COLUMNS = ['id', 'title', 'view_count'];
const TABLES = [{ table: 'posts', columns: COLUMNS }];
type Row = Record<string, unknown>;

async function superuser(): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: stack.db.url });
  await client.connect();
  return client;
}

/**
 * Writers inserting, updating (view_count + 1) and deleting posts until stopped. Each writer
 * touches only its own rows (seed posts with id % count = w, and the posts it inserted): two
 * transactions writing one row concurrently are delivered in xid order, not commit order (the
 * known bug tested in ordering.test.ts), which this test is not about.
 */
function startWriters(count: number): { stop: () => Promise<void>; transactions: () => number } {
  let running = true;
  let committed = 0;
  async function writer(w: number): Promise<void> {
    const client = await superuser();
    const { rows } = await client.query<{ id: string }>(
      'select id::text from public.posts where id % $1 = $2',
      [count, w],
    );
    const ids = rows.map((r) => r.id);
    let n = 0;
    try {
      while (running) {
        n++;
        const inserted: string[] = [];
        const deleted: string[] = [];
        await client.query('begin');
        for (let i = 0; i < 1 + Math.floor(Math.random() * 3); i++) {
          const r = Math.random();
          const live = [...ids, ...inserted].filter((id) => !deleted.includes(id));
          const id = live[Math.floor(Math.random() * live.length)];
          if (id !== undefined && r < 0.55) {
            await client.query(
              'update public.posts set view_count = view_count + 1, title = $1 where id = $2',
              [`w${w} n${n} i${i}`, id],
            );
          } else if (id !== undefined && live.length > 3 && r < 0.7) {
            await client.query('delete from public.posts where id = $1', [id]);
            deleted.push(id);
          } else {
            const tenant = Math.random() < 0.5 ? ACME : GLOBEX;
            const author = tenant === ACME ? USERS.alice : USERS.bob;
            const res = await client.query<{ id: string }>(
              'insert into public.posts (tenant_id, author_id, title) values ($1, $2, $3) returning id::text',
              [tenant, author, `w${w} n${n} i${i}`],
            );
            inserted.push(res.rows[0]?.id as string);
          }
          if (Math.random() < 0.3) await sleepMs(Math.floor(Math.random() * 10));
        }
        if (Math.random() < 0.15) {
          await client.query('rollback');
        } else {
          await client.query('commit');
          committed++;
          ids.push(...inserted);
          for (const id of deleted) {
            const at = ids.indexOf(id);
            if (at >= 0) ids.splice(at, 1);
          }
        }
        await sleepMs(Math.floor(Math.random() * 15));
      }
    } finally {
      await client.end();
    }
  }
  const all = Promise.all(Array.from({ length: count }, (_, w) => writer(w)));
  return {
    async stop() {
      running = false;
      await all;
    },
    transactions: () => committed,
  };
}

/**
 * A transaction that wrote a post and stays open until `commit()`: while it is open, every
 * other commit has a higher xid than the snapshot's xmin, so a snapshot taken meanwhile holds
 * committed changes above its xmin that must not be delivered again, and this transaction's own
 * change (not in the snapshot) must be delivered after it.
 */
async function holdTransaction(): Promise<{ commit: () => Promise<void> }> {
  const client = await superuser();
  await client.query('begin');
  await client.query('insert into public.posts (tenant_id, author_id, title) values ($1, $2, $3)', [
    ACME,
    USERS.alice,
    'held across the snapshot',
  ]);
  return {
    async commit() {
      await client.query('commit');
      await client.end();
    },
  };
}

/** Applies snapshot rows and change events strictly; records why it could not. */
class Replica {
  readonly rows = new Map<string, Row>();
  readonly positions = new Set<string>();
  readonly problems: string[] = [];
  changesApplied = 0;
  snapshotEnded = false;

  apply(message: events.SubscribeResponse): void {
    const m = message.message;
    if (m?.$case === 'snapshotRow') {
      if (this.snapshotEnded) this.problems.push('snapshot_row after snapshot_end');
      const row = recordObject(m.value.columns, m.value.record);
      this.rows.set(String(row.id), row);
    } else if (m?.$case === 'snapshotEnd') {
      this.snapshotEnded = true;
    } else if (m?.$case === 'change') {
      this.change(m.value);
    }
  }

  private change(e: events.ChangeEvent): void {
    if (!this.snapshotEnded) this.problems.push('change before snapshot_end');
    const p = decodePosition(e.position);
    const key = `${p.window}/${p.id}`;
    if (this.positions.has(key)) this.problems.push(`change ${key} delivered twice`);
    this.positions.add(key);
    this.changesApplied++;
    const record = recordObject(e.columns, e.record);
    const id = String(record.id);
    const current = this.rows.get(id);
    switch (e.operation) {
      case events.Operation.OPERATION_INSERT:
        if (current) this.problems.push(`INSERT ${key} of post ${id} that already exists`);
        this.rows.set(id, record);
        break;
      case events.Operation.OPERATION_UPDATE: {
        const old = recordObject(e.columns, e.oldRecord);
        if (!current) this.problems.push(`UPDATE ${key} of missing post ${id}`);
        else if (JSON.stringify(old, big) !== JSON.stringify(current, big))
          this.problems.push(
            `UPDATE ${key} of post ${id}: old ${JSON.stringify(old, big)} != ${JSON.stringify(current, big)}`,
          );
        this.rows.set(id, record);
        break;
      }
      case events.Operation.OPERATION_DELETE:
        if (!current) this.problems.push(`DELETE ${key} of missing post ${id}`);
        else if (JSON.stringify(record, big) !== JSON.stringify(current, big))
          this.problems.push(
            `DELETE ${key} of post ${id}: old ${JSON.stringify(record, big)} != ${JSON.stringify(current, big)}`,
          );
        this.rows.delete(id);
        break;
      default:
        this.problems.push(`unknown operation ${e.operation}`);
    }
  }
}

const big = (_: string, v: unknown) => (typeof v === 'bigint' ? v.toString() : v);

/** The table as the replica holds it: id -> { id, title, view_count } with the same plain values. */
async function tableRows(): Promise<Map<string, Row>> {
  const db = await superuser();
  try {
    const { rows } = await db.query<{ id: string; title: string; view_count: string }>(
      'select id::text, title, view_count::text from public.posts',
    );
    return new Map(
      rows.map((r) => [r.id, { id: BigInt(r.id), title: r.title, view_count: BigInt(r.view_count) }]),
    );
  } finally {
    await db.end();
  }
}

/** Waits until the stream sent a heartbeat at or past the last change in the log (all changes delivered). */
async function waitCaughtUp(stream: StreamCollector): Promise<void> {
  const db = await superuser();
  let last: { window: bigint; id: bigint };
  try {
    // A window holding every change so far: a heartbeat at its end has seen them all.
    const appended = await appendWindow(db);
    last = { window: appended.window, id: appended.lastId };
  } finally {
    await db.end();
  }
  await waitFor(
    () =>
      stream.ended ||
      stream.messages.some(
        (m) =>
          m.message?.$case === 'heartbeat' &&
          comparePositions(decodePosition(m.message.value.position), last) >= 0,
      ),
    { timeoutMs: 15_000, what: 'a heartbeat past the last change in the log' },
  );
  expect(stream.error).toBeUndefined();
}

function expectReplicaEqualsTable(replica: Replica, table: Map<string, Row>): void {
  expect(replica.problems).toEqual([]);
  const sorted = (m: Map<string, Row>) =>
    [...m.entries()].sort(([a], [b]) => Number(a) - Number(b)).map(([, r]) => JSON.stringify(r, big));
  expect(sorted(replica.rows)).toEqual(sorted(table));
}

it('snapshot then changes while writers run rebuilds the table exactly', async () => {
  const held = await holdTransaction();
  const writers = startWriters(3);
  const replica = new Replica();
  let stream: StreamCollector | undefined;
  try {
    await sleepMs(300);
    const client = stack.eventsClient(await stack.token('service'));
    stream = collectStream(
      client,
      { tables: TABLES, start: { $case: 'snapshot', value: true } },
      { onMessage: (m) => replica.apply(m) },
    );
    await waitFor(() => replica.snapshotEnded || (stream?.ended ?? false), { what: 'snapshot_end' });
    const atSnapshotEnd = writers.transactions();
    await sleepMs(300);
    await held.commit();
    await sleepMs(1200);
    await writers.stop();
    // Writers really ran on both sides of the snapshot.
    expect(atSnapshotEnd).toBeGreaterThan(5);
    expect(writers.transactions()).toBeGreaterThan(atSnapshotEnd + 5);
    await waitCaughtUp(stream);
    expect(replica.changesApplied).toBeGreaterThan(5);
    expectReplicaEqualsTable(replica, await tableRows());
    expect([...replica.rows.values()].some((r) => r.title === 'held across the snapshot')).toBe(true);
  } finally {
    await held.commit().catch(() => {});
    await writers.stop();
    await stream?.stop();
  }
}, 30_000);

it('resuming from the snapshot_end position right away still rebuilds the table exactly', async () => {
  const held = await holdTransaction();
  const writers = startWriters(3);
  const replica = new Replica();
  let resumed: StreamCollector | undefined;
  try {
    await sleepMs(300);
    const first = collectStream(
      stack.eventsClient(await stack.token('service')),
      { tables: TABLES, start: { $case: 'snapshot', value: true } },
      { stopAfterSnapshotEnd: true, onMessage: (m) => replica.apply(m) },
    );
    await first.done;
    expect(first.error).toBeUndefined();
    expect(first.messages.at(-1)?.message?.$case).toBe('snapshotEnd');
    expect(first.changes).toEqual([]);
    const snapshotEnd = first.lastPosition as string;
    await sleepMs(300); // writers commit more
    await held.commit(); // in the snapshot's xip: its change comes after snapshot_end

    resumed = collectStream(
      stack.eventsClient(await stack.token('service')),
      { tables: TABLES, start: { $case: 'fromPosition', value: snapshotEnd } },
      { onMessage: (m) => replica.apply(m) },
    );
    await sleepMs(1200);
    await writers.stop();
    await waitCaughtUp(resumed);
    expect(replica.changesApplied).toBeGreaterThan(5);
    expectReplicaEqualsTable(replica, await tableRows());
    expect([...replica.rows.values()].some((r) => r.title === 'held across the snapshot')).toBe(true);
  } finally {
    await held.commit().catch(() => {});
    await writers.stop();
    await resumed?.stop();
  }
}, 30_000);
