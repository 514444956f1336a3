import { setTimeout as delay } from 'node:timers/promises';
import { type ChangeBatch, ChangeFeed } from '@sluice/changes';
import { CatalogWatcher } from '@sluice/db';
import { createTestDatabase, type TestDatabase } from '@sluice/testing';
import type pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appPool, createProbeTable, superClient } from '../packages/changes/test/helpers';
import { startTcpProxy, type TcpProxy } from './tcp-proxy';

// Finding 2 of the fault review: while PostgreSQL is down, a session connection (the change
// feed's LISTEN, the catalog watcher's LISTEN) must retry in one loop with capped backoff and
// jitter, and come back as exactly one session. Each session goes through a proxy of its own
// that plays the database being down, so its connection attempts can be counted.

let db: TestDatabase;
let pool: pg.Pool;
let admin: pg.Client;
let feedProxy: TcpProxy;
let watcherProxy: TcpProxy;
let feed: ChangeFeed;
let watcher: CatalogWatcher;
const batches: ChangeBatch[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  pool = appPool(db);
  admin = await superClient(db);
  admin.on('error', () => {});
  await createProbeTable(admin, 'change_probe', { notify: true });
  const port = Number(new URL(db.appUrl).port);
  feedProxy = await startTcpProxy(port);
  watcherProxy = await startTcpProxy(port);
  const logger = pino({ level: 'silent' });
  feed = await ChangeFeed.start({
    pool,
    listenConnectionString: feedProxy.url(db.appUrl),
    batchSize: 100,
    // Only NOTIFY (or the slow poll) wakes this feed: a delivered change proves LISTEN is back.
    probeIntervalMs: 0,
    pollIntervalMs: 60_000,
    logger,
  });
  feed.onBatch((batch) => {
    batches.push(batch);
  });
  watcher = await CatalogWatcher.start({
    connectionString: watcherProxy.url(db.appUrl),
    schemas: ['public'],
    roles: ['authenticated'],
    logger,
  });
});

afterAll(async () => {
  await feed?.close();
  await watcher?.close();
  await feedProxy?.close();
  await watcherProxy?.close();
  await admin?.end();
  await pool?.end();
  await db?.drop();
});

async function sessions(applicationName: string): Promise<number> {
  const { rows } = await admin.query<{ n: number }>(
    `select count(*)::int as n from pg_stat_activity
      where datname = current_database() and application_name = $1`,
    [applicationName],
  );
  return rows[0]?.n ?? 0;
}

async function waitUntil(what: string, condition: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await delay(50);
  }
}

describe('session connections while the database is down', () => {
  it('retry in one loop with capped backoff, never leak, and come back as one session each', async () => {
    expect(await sessions('sluice-change-feed')).toBe(1);
    expect(await sessions('sluice-catalog-listener')).toBe(1);
    const feedBefore = feedProxy.accepted;
    const watcherBefore = watcherProxy.accepted;

    feedProxy.setDown(true);
    watcherProxy.setDown(true);
    await delay(3_000);
    const feedAttempts = feedProxy.accepted - feedBefore;
    const watcherAttempts = watcherProxy.accepted - watcherBefore;
    // One loop doubling its delay from 100-250 ms makes at most about six attempts in 3 s; two
    // loops per failure (the bug) make dozens.
    expect(feedAttempts).toBeGreaterThanOrEqual(1);
    expect(feedAttempts).toBeLessThanOrEqual(8);
    expect(watcherAttempts).toBeLessThanOrEqual(8);
    expect(await sessions('sluice-change-feed')).toBe(0);

    feedProxy.setDown(false);
    watcherProxy.setDown(false);
    // Back within the backoff cap, as exactly one session each, and staying one.
    await waitUntil(
      'the LISTEN sessions to come back',
      async () => {
        return (
          (await sessions('sluice-change-feed')) >= 1 && (await sessions('sluice-catalog-listener')) >= 1
        );
      },
      15_000,
    );
    await delay(1_500);
    expect(await sessions('sluice-change-feed')).toBe(1);
    expect(await sessions('sluice-catalog-listener')).toBe(1);
    expect(feedProxy.open).toBe(1);

    // NOTIFY reaches the feed again (its poll is a minute away).
    await delay(200);
    await admin.query(`insert into change_probe (marker) values ('after-outage')`);
    await waitUntil(
      'the change written after the outage',
      async () => batches.some((b) => b.changes.some((c) => c.record.includes('after-outage'))),
      5_000,
    );
  });
});
