import type { events } from '@sluice/proto';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ACME, appendWindow, DELIVERY_ORDER, type EventsStack, startEventsStack, USERS } from './helpers';
import { collectStream, recordObject, sleepMs, waitFor } from './stream-collector';

// Two instances of the events service (each its own pool, feed and server) on one database:
// both append windows to the same log, so they deliver the same changes in the same order with
// the same positions, and a position from one resumes on the other.

let stack: EventsStack;
beforeAll(async () => {
  stack = await startEventsStack({ EVENTS_HEARTBEAT_MS: '200' });
});
afterAll(async () => {
  await stack?.close();
});

const TABLES = [{ table: 'posts', columns: ['id', 'title'] }];
const INSERT = `insert into public.posts (tenant_id, author_id, title) values ($1, $2, $3) returning id`;
const titleOf = (e: events.ChangeEvent) => recordObject(e.columns, e.record).title as string;

async function superuser(): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: stack.db.url });
  await client.connect();
  return client;
}

it('two instances deliver the same changes with the same positions, and positions move between them', async () => {
  const other = await stack.addEventsInstance();
  const token = await stack.token('service');
  const prefix = `inst-${Date.now()}`;

  // A common starting point: a heartbeat position from instance A.
  const first = collectStream(
    stack.eventsClient(token),
    { tables: TABLES, start: { $case: 'fromNow', value: true } },
    { stopWhen: (m) => m.message?.$case === 'heartbeat' },
  );
  await waitFor(() => first.ended, { what: 'a heartbeat' });
  const start = first.lastPosition as string;
  const request = { tables: TABLES, start: { $case: 'fromPosition' as const, value: start } };
  const onA = collectStream(stack.eventsClient(token), request);
  const onB = collectStream(other.client(token), request);

  // Concurrent writers, with updates of shared rows.
  async function writer(w: number): Promise<void> {
    const client = await superuser();
    try {
      const ids: string[] = [];
      for (let t = 0; t < 25; t++) {
        await client.query('begin');
        const title = `${prefix} w${w} t${t}`;
        if (ids.length > 0 && t % 3 === 0) {
          await client.query('update public.posts set title = $1 where id = $2', [
            title,
            ids[t % ids.length],
          ]);
        } else {
          const { rows } = await client.query<{ id: string }>(INSERT, [ACME, USERS.dave, title]);
          ids.push(String(rows[0]?.id));
        }
        await sleepMs(Math.floor(Math.random() * 8));
        await client.query('commit');
      }
    } finally {
      await client.end();
    }
  }
  await Promise.all([0, 1, 2, 3].map(writer));

  const db = await superuser();
  let expected: string[];
  try {
    await appendWindow(db);
    const { rows } = await db.query<{ title: string }>(
      `select c.record->>'title' as title from sluice.change_log c
        where c."table" = 'posts' and c.record->>'title' like $1 order by ${DELIVERY_ORDER}`,
      [`${prefix} %`],
    );
    expected = rows.map((r) => r.title);
  } finally {
    await db.end();
  }
  expect(expected.length).toBe(100);
  const ours = (s: typeof onA) => s.changes.filter((e) => titleOf(e).startsWith(`${prefix} `));
  await waitFor(() => ours(onA).length >= 100 && ours(onB).length >= 100, { what: 'both streams' });
  await sleepMs(200);
  await Promise.all([onA.stop(), onB.stop()]);

  expect(ours(onA).map(titleOf)).toEqual(expected);
  expect(ours(onB).map(titleOf)).toEqual(expected);
  // The very same position tokens, change by change.
  expect(onB.changes.map((e) => e.position)).toEqual(onA.changes.map((e) => e.position));

  // A position issued by A, resumed on B: exactly the changes after it.
  const cut = 37;
  const resumed = collectStream(
    other.client(token),
    { tables: TABLES, start: { $case: 'fromPosition', value: onA.changes[cut - 1]?.position as string } },
    { stopAfterChanges: onA.changes.length - cut },
  );
  await waitFor(() => resumed.ended, { what: 'the rest of the changes on B' });
  expect(resumed.error).toBeUndefined();
  expect(resumed.changes.map(titleOf)).toEqual(onA.changes.slice(cut).map(titleOf));
  await other.close();
});
