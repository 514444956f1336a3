import { setTimeout as delay } from 'node:timers/promises';
import { ConfigError } from '@sluice/core';
import { Status } from 'nice-grpc';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadEventsConfig } from '../src/config';
import { expectStatus, expectSubscribeRejected } from './expect-status';
import { ACME, type EventsClient, type EventsStack, startEventsStack, USERS } from './helpers';
import { OpenStream, type SubscribeReq } from './open-stream';

// No single identity may take what all subscribers share: Subscribe calls are capped per
// identity (3) and in total (5); snapshots, each holding a pooled connection in a REPEATABLE
// READ transaction while it reads, per identity (1) and in total (2), and for at most 2 s.
const ENV = {
  DB_POOL_MAX: '4',
  EVENTS_HEARTBEAT_MS: '100',
  EVENTS_MAX_SUBSCRIPTIONS_PER_IDENTITY: '3',
  EVENTS_MAX_SUBSCRIPTIONS: '5',
  EVENTS_MAX_SNAPSHOTS_PER_IDENTITY: '1',
  EVENTS_MAX_SNAPSHOTS: '2',
  EVENTS_SNAPSHOT_TIMEOUT_MS: '2000',
};

let stack: EventsStack;
let admin: pg.Client;
let alice: EventsClient;
let carol: EventsClient;
let dave: EventsClient;
let service: EventsClient;

beforeAll(async () => {
  stack = await startEventsStack(ENV);
  admin = new pg.Client({ connectionString: stack.db.url });
  await admin.connect();
  [alice, carol, dave, service] = [
    stack.eventsClient(await stack.token('alice')),
    stack.eventsClient(await stack.token('carol')),
    stack.eventsClient(await stack.token('dave')),
    stack.eventsClient(await stack.token('service')),
  ];
});

afterAll(async () => {
  await admin?.end();
  await stack?.close();
});

const fromNow: SubscribeReq = {
  tables: [{ table: 'posts', columns: ['id'] }],
  start: { $case: 'fromNow', value: true },
};
const snapshot: SubscribeReq = {
  tables: [{ table: 'posts', columns: ['id', 'body'] }],
  start: { $case: 'snapshot', value: true },
};

async function waitFor(condition: () => Promise<boolean> | boolean, timeoutMs: number, what: string) {
  const started = performance.now();
  while (!(await condition())) {
    if (performance.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await delay(20);
  }
}

/** Backends of the events service's pool waiting in a snapshot's select (see `lockPosts`). */
async function snapshotsWaiting(): Promise<number> {
  const { rows } = await admin.query<{ n: number }>(
    `select count(*)::int as n from pg_stat_activity
     where datname = current_database() and application_name = 'sluice-events'
       and state = 'active' and wait_event_type = 'Lock'`,
  );
  return rows[0]?.n ?? 0;
}

/** Backends of the events service's pool in `state` whose last statement was a snapshot's select. */
async function snapshotSessions(state: string): Promise<number> {
  const { rows } = await admin.query<{ n: number }>(
    `select count(*)::int as n from pg_stat_activity
     where datname = current_database() and application_name = 'sluice-events' and state = $1
       and query like 'select "id", "body" from "public"."posts"%'`,
    [state],
  );
  return rows[0]?.n ?? 0;
}

/** Holds an ACCESS EXCLUSIVE lock on posts: every snapshot of posts waits, holding its connection. */
async function lockPosts(): Promise<pg.Client> {
  const locker = new pg.Client({ connectionString: stack.db.url });
  await locker.connect();
  await locker.query('begin');
  await locker.query('lock table public.posts in access exclusive mode');
  return locker;
}

async function unlock(locker: pg.Client): Promise<void> {
  await locker.query('rollback');
  await locker.end();
}

describe('subscriptions', () => {
  it('are capped per identity and in total, at once; other identities are unaffected', async () => {
    const mine = [
      new OpenStream(alice, fromNow),
      new OpenStream(alice, fromNow),
      new OpenStream(alice, fromNow),
    ];
    await Promise.all(mine.map((s) => s.ready()));

    const started = performance.now();
    const refused = await expectSubscribeRejected(
      alice,
      fromNow,
      { code: Status.RESOURCE_EXHAUSTED, reason: 'SLUICE_IDENTITY_LIMIT' },
      3000,
    );
    expect(refused.metadata).toEqual({ kind: 'subscriptions', limit: '3' });
    expect(performance.now() - started).toBeLessThan(1000);

    // Other identities subscribe as usual, up to the total.
    const others = [new OpenStream(carol, fromNow), new OpenStream(dave, fromNow)];
    await Promise.all(others.map((s) => s.ready()));
    await expectSubscribeRejected(
      carol,
      fromNow,
      { code: Status.RESOURCE_EXHAUSTED, reason: 'SLUICE_TOTAL_LIMIT' },
      3000,
    );
    // service_role has no per-identity cap, but the total holds for it too.
    await expectSubscribeRejected(
      service,
      fromNow,
      { code: Status.RESOURCE_EXHAUSTED, reason: 'SLUICE_TOTAL_LIMIT' },
      3000,
    );

    // A subscription that ends gives its slot back.
    await mine[0]?.cancel();
    await waitFor(() => stack.events.subscribers() === 4, 5000, 'the cancelled stream detached');
    const again = new OpenStream(alice, fromNow);
    await again.ready();
    expect(again.error).toBeUndefined();
    for (const s of [...mine, ...others, again]) await s.cancel();
    await waitFor(() => stack.events.subscribers() === 0, 5000, 'every stream detached');
  });
});

describe('snapshots', () => {
  it('are capped per identity and in total while they hold a connection; followers are unaffected', async () => {
    const locker = await lockPosts();
    const streams: OpenStream[] = [];
    try {
      streams.push(new OpenStream(alice, snapshot));
      await waitFor(async () => (await snapshotsWaiting()) === 1, 3000, "alice's snapshot waiting");

      const started = performance.now();
      await expectSubscribeRejected(
        alice,
        snapshot,
        {
          code: Status.RESOURCE_EXHAUSTED,
          reason: 'SLUICE_IDENTITY_LIMIT',
        },
        1500,
      );
      expect(performance.now() - started).toBeLessThan(1000);

      streams.push(new OpenStream(carol, snapshot));
      await waitFor(async () => (await snapshotsWaiting()) === 2, 3000, "carol's snapshot waiting");
      const refused = await expectSubscribeRejected(
        dave,
        snapshot,
        {
          code: Status.RESOURCE_EXHAUSTED,
          reason: 'SLUICE_TOTAL_LIMIT',
        },
        1500,
      );
      expect(refused.metadata).toEqual({ kind: 'snapshots', limit: '2' });

      // A subscription without a snapshot holds no connection and is not held back.
      const follower = new OpenStream(dave, fromNow);
      streams.push(follower);
      await follower.ready(1500);
    } finally {
      await unlock(locker);
    }
    // Released, both snapshots complete.
    for (const s of streams.slice(0, 2)) {
      await s.waitFor(
        (x) => x.messages.some((m) => m.message?.$case === 'snapshotEnd'),
        5000,
        'snapshot_end',
      );
    }
    for (const s of streams) await s.cancel();
    await waitFor(() => stack.events.subscribers() === 0, 5000, 'every stream detached');
  });

  it('end with DEADLINE_EXCEEDED past EVENTS_SNAPSHOT_TIMEOUT_MS and release their connection', async () => {
    const locker = await lockPosts();
    try {
      const stream = new OpenStream(alice, snapshot);
      await waitFor(async () => (await snapshotsWaiting()) === 1, 3000, 'the snapshot waiting');
      await stream.done;
      const rejection = expectStatus(stream.error, {
        code: Status.DEADLINE_EXCEEDED,
        reason: 'SLUICE_SNAPSHOT_TIMEOUT',
      });
      expect(rejection.message).toMatch(/2000 ms/);
      // Its statement was cancelled and its connection given back while posts is still locked.
      await waitFor(async () => (await snapshotsWaiting()) === 0, 2000, 'the snapshot cancelled');
      // ...and so was the slot.
      const next = new OpenStream(alice, snapshot);
      await waitFor(async () => (await snapshotsWaiting()) === 1, 3000, 'a new snapshot waiting');
      await next.cancel();
    } finally {
      await unlock(locker);
    }
  });

  it('hold no connection while a client does not read them', async () => {
    await admin.query(
      `insert into public.posts (tenant_id, author_id, title, body)
       select $1, $2, 'limits: big', repeat('x', 40000) from generate_series(1, 100)`,
      [ACME, USERS.alice],
    );
    const controller = new AbortController();
    const stalled = alice.subscribe(snapshot, { signal: controller.signal })[Symbol.asyncIterator]();
    expect((await stalled.next()).value?.message?.$case).toBe('snapshotRow');
    // The rows were read before the first was sent: nothing is left in a transaction, and
    // alice's one snapshot slot is free for another snapshot.
    expect(await snapshotSessions('idle in transaction')).toBe(0);
    const second = new OpenStream(alice, snapshot);
    await second.waitFor(
      (x) => x.messages.some((m) => m.message?.$case === 'snapshotEnd'),
      5000,
      'snapshot_end',
    );
    await second.cancel();
    controller.abort();
  });
});

describe('settings', () => {
  const base = { DATABASE_URL: 'postgres://u:p@localhost/db', JWT_SECRET: 'x'.repeat(32) };

  it('have defaults', () => {
    const config = loadEventsConfig(base);
    expect(config.limits).toEqual({
      subscriptionsPerIdentity: 100,
      subscriptions: 10_000,
      snapshotsPerIdentity: 2,
      snapshots: 5,
    });
    expect(config.stream.snapshotTimeoutMs).toBe(30_000);
    expect(config.pool.idleInTransactionTimeoutMs).toBe(60_000);
    // A small pool or total lowers the per-identity defaults with it.
    expect(loadEventsConfig({ ...base, DB_POOL_MAX: '2', EVENTS_MAX_SUBSCRIPTIONS: '50' }).limits).toEqual({
      subscriptionsPerIdentity: 50,
      subscriptions: 50,
      snapshotsPerIdentity: 1,
      snapshots: 1,
    });
  });

  it('are read from the environment', () => {
    const config = loadEventsConfig({ ...base, ...ENV });
    expect(config.limits).toEqual({
      subscriptionsPerIdentity: 3,
      subscriptions: 5,
      snapshotsPerIdentity: 1,
      snapshots: 2,
    });
    expect(config.stream.snapshotTimeoutMs).toBe(2000);
  });

  it('refuse inconsistent values, all at once', () => {
    let error: unknown;
    try {
      loadEventsConfig({
        ...base,
        DB_POOL_MAX: '4',
        EVENTS_MAX_SUBSCRIPTIONS_PER_IDENTITY: '20',
        EVENTS_MAX_SUBSCRIPTIONS: '10',
        EVENTS_MAX_SNAPSHOTS_PER_IDENTITY: '6',
        EVENTS_MAX_SNAPSHOTS: '5',
        EVENTS_SNAPSHOT_TIMEOUT_MS: '0',
      });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems).toEqual([
      'EVENTS_MAX_SUBSCRIPTIONS_PER_IDENTITY must not exceed EVENTS_MAX_SUBSCRIPTIONS',
      'EVENTS_MAX_SNAPSHOTS_PER_IDENTITY must not exceed EVENTS_MAX_SNAPSHOTS',
      'EVENTS_MAX_SNAPSHOTS must not exceed DB_POOL_MAX',
      'EVENTS_SNAPSHOT_TIMEOUT_MS must be an integer from 10 to 3600000, got "0"',
    ]);
  });
});
