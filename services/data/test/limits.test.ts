import { setTimeout as delay } from 'node:timers/promises';
import { ConfigError } from '@sluice/core';
import type { data } from '@sluice/proto';
import { ClientError, Status } from 'nice-grpc';
import { ErrorInfo, RichClientError } from 'nice-grpc-error-details';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDataConfig } from '../src/config';
import { expectRejection } from './expect-rejection';
import { ACME, type DataClient, startStack, type TestStack, USERS } from './helpers';
import { eq, records, V } from './wire-values';

// The review finding: one signed-in user opens SelectStreams with chunk_size 1 over large rows
// and stops reading; every pooled connection sits "idle in transaction" and everyone else gets
// UNAVAILABLE. Here the pool has 4 connections; streams and transactions may hold 3 of them, 2
// per identity; a stream whose client takes nothing for 1 s is ended and its connection released.
const ENV = {
  DB_POOL_MAX: '4',
  DB_POOL_ACQUIRE_TIMEOUT_MS: '3000',
  MAX_LONG_CALLS: '3',
  MAX_LONG_CALLS_PER_IDENTITY: '2',
  STREAM_STALL_TIMEOUT_MS: '1000',
  DB_IDLE_IN_TRANSACTION_TIMEOUT_MS: '5000',
};
const BIG_TITLE = 'limits: big row';
const BIG_ROWS = 120;

let stack: TestStack;
let admin: pg.Client;
let alice: DataClient;
let carol: DataClient;
let dave: DataClient;
let service: DataClient;

beforeAll(async () => {
  stack = await startStack(ENV);
  admin = new pg.Client({ connectionString: stack.db.url });
  await admin.connect();
  // Rows of ~40 kB: a few dozen fill every transport buffer between server and client.
  await admin.query(
    `insert into public.posts (tenant_id, author_id, title, body, status)
     select $1, $2, $3, repeat('x', 40000), 'published' from generate_series(1, ${BIG_ROWS})`,
    [ACME, USERS.alice, BIG_TITLE],
  );
  await admin.query(`
    create function public.slow(seconds float8) returns void language sql volatile
      as $$ select pg_sleep(seconds) $$;
    create function public.session_setting(name text) returns text language sql stable
      as $$ select setting from pg_settings where pg_settings.name = session_setting.name $$;
    grant execute on function public.slow(float8), public.session_setting(text) to authenticated;
  `);
  [alice, carol, dave, service] = [
    stack.client(await stack.token('alice')),
    stack.client(await stack.token('carol')),
    stack.client(await stack.token('dave')),
    stack.client(await stack.token('service')),
  ];
  await waitFor(
    async () => (await alice.describeSchema({})).functions.some((f) => f.name === 'slow'),
    5000,
    'the catalog to reload',
  );
});

afterAll(async () => {
  await admin?.end();
  await stack?.close();
});

async function waitFor(condition: () => Promise<boolean>, timeoutMs: number, what: string): Promise<number> {
  const started = performance.now();
  for (;;) {
    if (await condition()) return performance.now() - started;
    if (performance.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await delay(20);
  }
}

/** Backends of the data service's pool in this test's database, by state. */
async function poolSessions(state: string): Promise<number> {
  const { rows } = await admin.query<{ n: number }>(
    `select count(*)::int as n from pg_stat_activity
     where datname = current_database() and application_name = 'sluice-data' and state = $1`,
    [state],
  );
  return rows[0]?.n ?? 0;
}

/** A SelectStream over the big rows, one row per message, whose first message has been read. */
interface OpenedStream {
  readonly iterator: AsyncIterator<data.SelectStreamResponse>;
  readonly controller: AbortController;
  readonly first?: data.SelectStreamResponse;
  readonly error?: unknown;
}

async function openStream(client: DataClient): Promise<OpenedStream> {
  const controller = new AbortController();
  const iterator = client
    .selectStream(
      {
        query: {
          table: 'posts',
          columns: ['id', 'body'],
          filter: eq('title', V.str(BIG_TITLE)),
          order: [{ column: 'id' }],
        },
        chunkSize: 1,
      },
      { signal: controller.signal },
    )
    [Symbol.asyncIterator]();
  try {
    const next = await iterator.next();
    return { iterator, controller, first: next.value };
  } catch (error) {
    return { iterator, controller, error };
  }
}

/** Reads what is left of a stream: the number of messages and the error that ended it. */
async function drain(
  stream: OpenedStream,
  timeoutMs = 10_000,
): Promise<{ messages: number; error: unknown }> {
  const timer = setTimeout(() => stream.controller.abort(), timeoutMs);
  let messages = 0;
  try {
    for (;;) {
      const next = await stream.iterator.next();
      if (next.done) return { messages, error: undefined };
      messages++;
    }
  } catch (error) {
    return { messages, error };
  } finally {
    clearTimeout(timer);
  }
}

function reasonOf(error: unknown): { code: string; reason: string; metadata: Record<string, string> } {
  expect(error).toBeInstanceOf(ClientError);
  const info = (error instanceof RichClientError ? error.extra : []).find(
    (d) => d.$type === ErrorInfo.$type,
  ) as ErrorInfo | undefined;
  return {
    code: Status[(error as ClientError).code] ?? '',
    reason: info?.reason ?? '',
    metadata: info?.metadata ?? {},
  };
}

const slowTransaction = (client: DataClient, seconds: number) =>
  client.transaction({
    operations: [
      {
        kind: {
          $case: 'call',
          value: { schema: '', function: 'slow', args: [{ name: 'seconds', value: V.double(seconds) }] },
        },
      },
    ],
  });

describe('streams a client stops reading', () => {
  it('cannot take the pool: an identity gets its share, then RESOURCE_EXHAUSTED at once; others are served', async () => {
    const started = performance.now();
    const opened = await Promise.all(Array.from({ length: 6 }, () => openStream(alice)));
    const refusedIn = performance.now() - started;
    const streaming = opened.filter((s) => s.first);
    const refused = opened.filter((s) => s.error);
    expect(streaming).toHaveLength(2);
    expect(refused).toHaveLength(4);
    for (const s of refused) {
      expect(reasonOf(s.error)).toMatchObject({
        code: 'RESOURCE_EXHAUSTED',
        reason: 'SLUICE_IDENTITY_LIMIT',
        metadata: { limit: '2', kind: 'streams and transactions' },
      });
    }
    // Refused at once, not after the pool's acquire timeout.
    expect(refusedIn).toBeLessThan(2000);

    // Another identity's Select is served promptly while alice's two streams stall.
    const t0 = performance.now();
    const res = await carol.select(
      { table: 'posts', columns: ['id'], limit: 1 },
      { signal: AbortSignal.timeout(1500) },
    );
    expect(res.result?.rows).toHaveLength(1);
    expect(performance.now() - t0).toBeLessThan(1000);

    for (const s of opened) s.controller.abort();
    await waitFor(
      async () => (await poolSessions('idle in transaction')) === 0,
      3000,
      'cancelled streams released',
    );
  });

  it('end after the stall timeout with SLUICE_STREAM_STALLED, releasing their connections at once', async () => {
    const streaming = await Promise.all([openStream(alice), openStream(alice)]);
    expect(streaming.map((s) => s.error)).toEqual([undefined, undefined]);
    const opened = performance.now();
    // Both fill the transport buffers, then sit idle in their transactions.
    await waitFor(async () => (await poolSessions('idle in transaction')) === 2, 800, 'both streams stalled');
    await waitFor(
      async () => (await poolSessions('idle in transaction')) === 0,
      3000,
      'stalled sessions released',
    );
    expect(performance.now() - opened).toBeGreaterThan(800);

    // Stalled streams still count for alice until she reads their end or cancels them...
    const third = await openStream(alice);
    expect(reasonOf(third.error)).toMatchObject({
      code: 'RESOURCE_EXHAUSTED',
      reason: 'SLUICE_IDENTITY_LIMIT',
    });
    // ...but no longer against the total: carol and dave can stream three at once.
    const others = await Promise.all([openStream(carol), openStream(carol), openStream(dave)]);
    expect(others.map((s) => s.error)).toEqual([undefined, undefined, undefined]);
    for (const s of others) s.controller.abort();

    // Reading again, alice gets what was already sent, then the stream's end with a stable reason.
    for (const s of streaming) {
      const { messages, error } = await drain(s);
      expect(messages).toBeLessThan(BIG_ROWS - 1);
      const info = reasonOf(error);
      expect(info).toMatchObject({ code: 'RESOURCE_EXHAUSTED', reason: 'SLUICE_STREAM_STALLED' });
      expect(info.metadata.stall_timeout_ms).toBe('1000');
      expect(Number(info.metadata.rows_sent)).toBe(messages + 1);
    }
    // Her share is back: a stream she reads to the end works.
    const again = await openStream(alice);
    expect(again.first).toBeDefined();
    expect(await drain(again)).toEqual({ messages: BIG_ROWS - 1, error: undefined });
    await waitFor(
      async () => (await poolSessions('idle in transaction')) === 0,
      3000,
      'no session left in a transaction',
    );
  });

  it('anonymous callers are one identity', async () => {
    // The big posts are published: anon reads them too.
    const anonStream = async () => {
      const controller = new AbortController();
      const iterator = stack
        .client()
        .selectStream(
          {
            query: { table: 'posts', columns: ['id', 'body'], filter: eq('title', V.str(BIG_TITLE)) },
            chunkSize: 1,
          },
          { signal: controller.signal },
        )
        [Symbol.asyncIterator]();
      try {
        await iterator.next();
        return { controller, error: undefined as unknown };
      } catch (error) {
        return { controller, error };
      }
    };
    const opened = [await anonStream(), await anonStream(), await anonStream()];
    expect(opened.map((s) => s.error === undefined)).toEqual([true, true, false]);
    expect(reasonOf(opened[2]?.error)).toMatchObject({ reason: 'SLUICE_IDENTITY_LIMIT' });
    for (const s of opened) s.controller.abort();
    await waitFor(
      async () => (await poolSessions('idle in transaction')) === 0,
      3000,
      'cancelled streams released',
    );
  });

  it('service_role is bounded by the total only', async () => {
    const opened = await Promise.all(Array.from({ length: 4 }, () => openStream(service)));
    expect(opened.filter((s) => s.first)).toHaveLength(3);
    const refused = opened.find((s) => s.error);
    expect(reasonOf(refused?.error)).toMatchObject({
      code: 'RESOURCE_EXHAUSTED',
      reason: 'SLUICE_TOTAL_LIMIT',
      metadata: { limit: '3' },
    });
    for (const s of opened) s.controller.abort();
    await waitFor(
      async () => (await poolSessions('idle in transaction')) === 0,
      3000,
      'cancelled streams released',
    );
  });
});

describe('transactions', () => {
  it('are capped per identity and in total; unary calls keep the rest of the pool', async () => {
    const running = async () => {
      const { rows } = await admin.query<{ n: number }>(
        `select count(*)::int as n from pg_stat_activity
         where datname = current_database() and state = 'active' and query like '%"slow"(%'
           and pid <> pg_backend_pid()`,
      );
      return rows[0]?.n ?? 0;
    };
    const a1 = slowTransaction(alice, 1.5);
    const a2 = slowTransaction(alice, 1.5);
    await waitFor(async () => (await running()) === 2, 2000, 'two slow transactions');

    const t0 = performance.now();
    await expectRejection(slowTransaction(alice, 0), {
      code: Status.RESOURCE_EXHAUSTED,
      reason: 'SLUICE_IDENTITY_LIMIT',
    });
    expect(performance.now() - t0).toBeLessThan(500);

    const d1 = slowTransaction(dave, 1.5);
    await waitFor(async () => (await running()) === 3, 2000, 'three slow transactions');
    await expectRejection(slowTransaction(carol, 0), {
      code: Status.RESOURCE_EXHAUSTED,
      reason: 'SLUICE_TOTAL_LIMIT',
    });
    await expectRejection(slowTransaction(service, 0), {
      code: Status.RESOURCE_EXHAUSTED,
      reason: 'SLUICE_TOTAL_LIMIT',
    });
    // The fourth connection is still there for everyone's short calls.
    const res = await carol.select(
      { table: 'posts', columns: ['id'], limit: 1 },
      { signal: AbortSignal.timeout(1500) },
    );
    expect(res.result?.rows).toHaveLength(1);

    await expect(Promise.all([a1, a2, d1])).resolves.toHaveLength(3);
    await expect(slowTransaction(alice, 0)).resolves.toMatchObject({ committed: true });
  });
});

describe('idle in transaction backstop', () => {
  it('every pooled session has idle_in_transaction_session_timeout = DB_IDLE_IN_TRANSACTION_TIMEOUT_MS', async () => {
    const res = await alice.call({
      schema: '',
      function: 'session_setting',
      args: [{ name: 'name', value: V.str('idle_in_transaction_session_timeout') }],
    });
    expect(records(res.result)).toEqual([{ session_setting: '5000' }]);
  });
});

describe('settings', () => {
  const base = { DATABASE_URL: 'postgres://u:p@localhost/db', JWT_SECRET: 'x'.repeat(32) };

  it('default to a share of the pool, a 30 s stall timeout and a 60 s backstop', () => {
    const config = loadDataConfig(base);
    expect(config.limits.streamStallTimeoutMs).toBe(30_000);
    expect(config.longCalls).toEqual({ perIdentity: 3, total: 7 });
    expect(config.pool.idleInTransactionTimeoutMs).toBe(60_000);
    expect(loadDataConfig({ ...base, DB_POOL_MAX: '20' }).longCalls).toEqual({ perIdentity: 5, total: 15 });
    expect(loadDataConfig({ ...base, DB_POOL_MAX: '1' }).longCalls).toEqual({ perIdentity: 1, total: 1 });
    // A lower total lowers the per-identity default with it.
    expect(loadDataConfig({ ...base, MAX_LONG_CALLS: '2' }).longCalls).toEqual({ perIdentity: 2, total: 2 });
  });

  it('are read from the environment', () => {
    const config = loadDataConfig({ ...base, ...ENV, DB_IDLE_IN_TRANSACTION_TIMEOUT_MS: '0' });
    expect(config.limits.streamStallTimeoutMs).toBe(1000);
    expect(config.longCalls).toEqual({ perIdentity: 2, total: 3 });
    expect(config.pool.idleInTransactionTimeoutMs).toBe(0);
  });

  it('refuse inconsistent values, all at once', () => {
    let error: unknown;
    try {
      loadDataConfig({
        ...base,
        DB_POOL_MAX: '4',
        MAX_LONG_CALLS: '5',
        MAX_LONG_CALLS_PER_IDENTITY: '6',
        STREAM_STALL_TIMEOUT_MS: '2000',
        DB_IDLE_IN_TRANSACTION_TIMEOUT_MS: '2000',
      });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems).toEqual([
      'MAX_LONG_CALLS must not exceed DB_POOL_MAX',
      'MAX_LONG_CALLS_PER_IDENTITY must not exceed MAX_LONG_CALLS',
      'DB_IDLE_IN_TRANSACTION_TIMEOUT_MS must be 0 or greater than STREAM_STALL_TIMEOUT_MS',
    ]);
    expect(() => loadDataConfig({ ...base, STREAM_STALL_TIMEOUT_MS: 'soon' })).toThrow(
      /STREAM_STALL_TIMEOUT_MS/,
    );
    expect(() => loadDataConfig({ ...base, MAX_LONG_CALLS_PER_IDENTITY: '0' })).toThrow(
      /MAX_LONG_CALLS_PER_IDENTITY/,
    );
  });
});
