import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACME, type EventsStack, startEventsStack } from '../services/events/test/helpers';
import { OpenStream } from '../services/events/test/open-stream';

// Finding 1 of the fault review: when PostgreSQL drops connections (a fast shutdown, one backend
// killed) the services must not die on an unhandled 'error' event of a connection they hold,
// and the next call must work. The servers run in this process: an unhandled 'error' event
// becomes an uncaught exception here, which the spy below records.

let stack: EventsStack;
let admin: pg.Client;
const uncaught: unknown[] = [];
const onUncaught = (error: unknown) => uncaught.push(error);

beforeAll(async () => {
  process.on('uncaughtException', onUncaught);
  stack = await startEventsStack({ EVENTS_HEARTBEAT_MS: '100' });
  admin = new pg.Client({ connectionString: stack.db.url });
  admin.on('error', () => {});
  await admin.connect();
  await admin.query(`
    create function public.slow(seconds float8) returns void language sql volatile
      as $$ select pg_sleep(seconds) $$;
    grant execute on function public.slow(float8) to authenticated;`);
  // Wait until the data service's catalog has it (reload after DDL).
  const alice = stack.dataClient(await stack.token('alice'));
  for (let i = 0; ; i++) {
    const schema = await alice.describeSchema({});
    if (schema.functions.some((f) => f.name === 'slow')) break;
    if (i > 200) throw new Error('catalog did not reload');
    await delay(25);
  }
});

afterAll(async () => {
  await admin?.end();
  await stack?.close();
  process.off('uncaughtException', onUncaught);
});

/** Terminates every backend of the test database except the admin's own. */
async function terminateAll(): Promise<number> {
  const { rows } = await admin.query<{ n: number }>(
    `select count(pg_terminate_backend(pid))::int as n from pg_stat_activity
      where datname = current_database() and pid <> pg_backend_pid()`,
  );
  return rows[0]?.n ?? 0;
}

const insertPost = (title: string) => ({
  table: 'posts',
  columns: ['tenant_id', 'title'],
  rows: [
    {
      values: [
        { kind: { $case: 'stringValue' as const, value: ACME } },
        { kind: { $case: 'stringValue' as const, value: title } },
      ],
    },
  ],
});

describe('connections dropped by the server', () => {
  it('never crash the services, and the next calls succeed', async () => {
    const token = await stack.token('alice');
    const data = stack.dataClient(token);
    const eventsClient = stack.eventsClient(token);
    const stream = new OpenStream(eventsClient, {
      tables: [{ table: 'posts', columns: ['id', 'title'] }],
      start: { $case: 'fromNow', value: true },
    });
    await stream.ready();

    // Calls holding checked-out connections with a running statement when the backends go.
    const slowCalls = [0, 1, 2].map(() =>
      data
        .call({
          schema: '',
          function: 'slow',
          args: [{ name: 'seconds', value: { kind: { $case: 'doubleValue', value: 2 } } }],
        })
        .then(
          () => 'ok',
          (e: unknown) => e,
        ),
    );
    // Traffic through both services while the backends are terminated again and again.
    let writing = true;
    const writes = (async () => {
      let n = 0;
      while (writing) {
        await data.insert(insertPost(`fault-${n++}`)).catch(() => {});
        await data.select({ table: 'posts', columns: ['id'], limit: 5 }).catch(() => {});
      }
    })();
    const snapshots = [0, 1].map(async () => {
      for (let i = 0; i < 5; i++) {
        const s = new OpenStream(eventsClient, {
          tables: [{ table: 'posts', columns: ['id'] }],
          start: { $case: 'snapshot', value: true },
        });
        await delay(60);
        await s.cancel();
      }
    });
    await delay(300);
    let terminated = 0;
    for (let i = 0; i < 6; i++) {
      terminated += await terminateAll();
      await delay(100);
    }
    writing = false;
    await Promise.all([writes, ...snapshots, ...slowCalls]);
    expect(terminated).toBeGreaterThan(6);
    await delay(500);
    expect(uncaught).toEqual([]);

    // The next call works (the pool dropped the dead connections) and changes flow again.
    expect((await data.select({ table: 'posts', columns: ['id'], limit: 1 })).result?.rows.length).toBe(1);
    const after = new OpenStream(eventsClient, {
      tables: [{ table: 'posts', columns: ['id', 'title'] }],
      start: { $case: 'fromNow', value: true },
    });
    await after.ready();
    await data.insert(insertPost('after-the-fault'));
    await after.waitFor(
      (s) => s.changes.some((c) => c.record?.values.some((v) => v.kind?.value === 'after-the-fault')),
      10_000,
      'the change written after the fault',
    );
    await after.cancel();
    await stream.cancel();
    expect(uncaught).toEqual([]);
  });
});
