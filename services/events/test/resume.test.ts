import { comparePositions } from '@sluice/changes';
import { events } from '@sluice/proto';
import { ClientError, Status } from 'nice-grpc';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  ACME,
  appendWindow,
  DELIVERY_ORDER,
  type EventsClient,
  type EventsStack,
  startEventsStack,
  USERS,
} from './helpers';
import { collectStream, decodePosition, recordObject, sleepMs, waitFor } from './stream-collector';

// A client that disconnects anywhere and reconnects with the last position it received (from a
// change or a heartbeat) gets every committed change exactly once, also across a restart.

let stack: EventsStack;
beforeAll(async () => {
  stack = await startEventsStack({ EVENTS_HEARTBEAT_MS: '200' });
});
afterAll(async () => {
  await stack?.close();
});

const TABLES = [{ table: 'posts', columns: ['id', 'title', 'view_count'] }];
const INSERT = 'insert into public.posts (tenant_id, author_id, title) values ($1, $2, $3) returning id';

async function superuser(): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: stack.db.url });
  await client.connect();
  return client;
}

async function service(): Promise<EventsClient> {
  return stack.eventsClient(await stack.token('service'));
}

/** The position of the first heartbeat of a fresh from-now subscription (a live starting point). */
async function positionNow(): Promise<string> {
  const stream = collectStream(
    await service(),
    { tables: TABLES, start: { $case: 'fromNow', value: true } },
    { stopWhen: (m) => m.message?.$case === 'heartbeat' },
  );
  await waitFor(() => stream.ended, { what: 'a heartbeat' });
  expect(stream.error).toBeUndefined();
  expect(stream.lastPosition).toBeDefined();
  return stream.lastPosition as string;
}

/** change_log (id, op) of the posts whose title starts with `prefix`, in delivery order. */
async function loggedChanges(prefix: string): Promise<string[]> {
  const db = await superuser();
  try {
    await appendWindow(db);
    const { rows } = await db.query<{ key: string }>(
      `select c.id::text || ' ' || c.op as key from sluice.change_log c
        where c."table" = 'posts' and coalesce(c.record, c.old_record)->>'title' like $1
        order by ${DELIVERY_ORDER}`,
      [`${prefix} %`],
    );
    return rows.map((r) => r.key);
  } finally {
    await db.end();
  }
}

const OPS: Record<number, string> = {
  [events.Operation.OPERATION_INSERT]: 'INSERT',
  [events.Operation.OPERATION_UPDATE]: 'UPDATE',
  [events.Operation.OPERATION_DELETE]: 'DELETE',
};
const keyOf = (e: events.ChangeEvent) => `${decodePosition(e.position).id} ${OPS[e.operation]}`;
const titleOf = (e: events.ChangeEvent) => String(recordObject(e.columns, e.record).title);

it('reconnecting with the last position at random points (and across a restart) gives every change exactly once', async () => {
  const prefix = `resume-${Date.now()}`;
  let from = await positionNow();
  const rolledBack = new Set<string>();

  async function writer(w: number): Promise<void> {
    const client = await superuser();
    const mine: string[] = [];
    try {
      for (let t = 0; t < 40; t++) {
        const titles: string[] = [];
        const inserted: string[] = [];
        const deleted: string[] = [];
        await client.query('begin');
        for (let i = 0; i < 1 + Math.floor(Math.random() * 3); i++) {
          const title = `${prefix} w${w} t${t} i${i}`;
          titles.push(title);
          const live = mine.filter((id) => !deleted.includes(id));
          const r = Math.random();
          if (live.length > 0 && r < 0.3) {
            const id = live[Math.floor(Math.random() * live.length)];
            await client.query(
              'update public.posts set title = $1, view_count = view_count + 1 where id = $2',
              [title, id],
            );
          } else if (live.length > 2 && r < 0.4) {
            const id = live[Math.floor(Math.random() * live.length)] as string;
            await client.query('delete from public.posts where id = $1', [id]);
            deleted.push(id);
          } else {
            const { rows } = await client.query<{ id: string }>(INSERT, [ACME, USERS.alice, title]);
            inserted.push(String(rows[0]?.id));
          }
        }
        if (Math.random() < 0.15) {
          await client.query('rollback');
          for (const title of titles) rolledBack.add(title);
        } else {
          await client.query('commit');
          mine.push(...inserted);
          for (const id of deleted) mine.splice(mine.indexOf(id), 1);
        }
        await sleepMs(Math.floor(Math.random() * 40));
      }
    } finally {
      await client.end();
    }
  }

  const received: events.ChangeEvent[] = [];
  let expected: string[] | undefined;
  // Once the writers are done, the log tells what the union of the connections must be.
  const writers = Promise.all([0, 1, 2].map(writer)).then(async () => {
    expected = await loggedChanges(prefix);
  });
  let client = await service();
  let connections = 0;
  let restarted = false;
  let resumedFromHeartbeat = 0;
  try {
    for (;;) {
      connections++;
      // The second connection always ends on a heartbeat, so resuming from one is exercised.
      const byHeartbeat = connections === 2 || Math.random() < 0.2;
      const k = 1 + Math.floor(Math.random() * 6);
      const restartHere = !restarted && connections >= 3;
      const stream = collectStream(
        client,
        { tables: TABLES, start: { $case: 'fromPosition', value: from } },
        {
          stopWhen: (m, n) => !restartHere && (byHeartbeat ? m.message?.$case === 'heartbeat' : n >= k),
        },
      );
      const complete = () =>
        expected !== undefined && received.length + stream.changes.length >= expected.length;
      if (restartHere) {
        // The service goes away under an open stream: it ends with UNAVAILABLE, the client
        // resumes on the new instance with the position it had.
        restarted = true;
        await waitFor(() => stream.changes.length > 0 || stream.ended, {
          what: 'a change before the restart',
        });
        await stack.restartEvents();
        await waitFor(() => stream.ended, { what: 'the stream to end on shutdown' });
        expect(stream.error).toBeInstanceOf(ClientError);
        expect(Status[(stream.error as ClientError).code]).toBe('UNAVAILABLE');
        client = await service();
      } else {
        await waitFor(() => stream.ended || complete(), { timeoutMs: 15_000, what: 'the next disconnect' });
        await stream.stop();
        expect(stream.error).toBeUndefined();
      }
      received.push(...stream.changes);
      const last = stream.lastPosition;
      if (last !== undefined) {
        if (stream.messages.at(-1)?.message?.$case === 'heartbeat') resumedFromHeartbeat++;
        from = last;
      }
      if (expected !== undefined && received.length >= expected.length) break;
    }
    await writers;
    // Nothing more arrives after the last position.
    const tail = collectStream(client, { tables: TABLES, start: { $case: 'fromPosition', value: from } });
    await waitFor(() => tail.messages.some((m) => m.message?.$case === 'heartbeat'), { what: 'a heartbeat' });
    await tail.stop();
    received.push(...tail.changes);

    const keys = received.map(keyOf);
    expect(keys).toEqual(expected);
    expect(new Set(keys).size).toBe(keys.length);
    for (const e of received) expect(rolledBack.has(titleOf(e))).toBe(false);
    expect(restarted).toBe(true);
    expect(connections).toBeGreaterThan(5);
    expect(resumedFromHeartbeat).toBeGreaterThan(0);
  } finally {
    await writers.catch(() => {});
  }
}, 30_000);

it('resumes from a heartbeat position: exactly the changes after it', async () => {
  const prefix = `hb-${Date.now()}`;
  const db = await superuser();
  try {
    const first = await positionNow();
    for (const i of [1, 2, 3]) await db.query(INSERT, [ACME, USERS.alice, `${prefix} a${i}`]);

    // From a heartbeat taken before the writes: the three writes, then a heartbeat past them.
    const s1 = collectStream(
      await service(),
      { tables: TABLES, start: { $case: 'fromPosition', value: first } },
      { stopWhen: (m, n) => n >= 3 && m.message?.$case === 'heartbeat' },
    );
    await waitFor(() => s1.ended, { what: 'three changes and a heartbeat' });
    expect(s1.error).toBeUndefined();
    expect(s1.changes.map(titleOf)).toEqual([`${prefix} a1`, `${prefix} a2`, `${prefix} a3`]);
    const heartbeat = s1.lastPosition as string;
    expect(s1.messages.at(-1)?.message?.$case).toBe('heartbeat');
    const lastChange = decodePosition(s1.changes[2]?.position as string);
    const hb = decodePosition(heartbeat);
    expect(comparePositions(hb, lastChange)).toBeGreaterThanOrEqual(0);

    await db.query(INSERT, [ACME, USERS.alice, `${prefix} b1`]);
    await db.query(`update public.posts set title = $1 where title = $2`, [`${prefix} b2`, `${prefix} a1`]);

    // From the heartbeat after them: only the later writes, none of the first three again.
    const s2 = collectStream(await service(), {
      tables: TABLES,
      start: { $case: 'fromPosition', value: heartbeat },
    });
    await waitFor(() => s2.changes.length >= 2, { what: 'the two later changes' });
    await sleepMs(500);
    await s2.stop();
    expect(s2.error).toBeUndefined();
    expect(s2.changes.map(titleOf)).toEqual([`${prefix} b1`, `${prefix} b2`]);
    expect(s2.changes.map((e) => OPS[e.operation])).toEqual(['INSERT', 'UPDATE']);
  } finally {
    await db.end();
  }
});
