import { setTimeout as delay } from 'node:timers/promises';
import { createTestDatabase, type TestDatabase } from '@sluice/testing';
import type pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ChangeBatch, ChangeFeed, comparePositions } from '../src/index';
import { appPool, createProbeTable, superClient } from './helpers';

let db: TestDatabase;
let pool: pg.Pool;
let admin: pg.Client;
let feed: ChangeFeed;
const batches: ChangeBatch[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  pool = appPool(db);
  admin = await superClient(db);
  // This file's feed does not probe: only NOTIFY (or the 5 s poll) wakes it.
  await createProbeTable(admin, 'change_probe', { notify: true });
  await createProbeTable(admin, 'quiet_probe');
  feed = await ChangeFeed.start({
    pool,
    listenConnectionString: db.appUrl,
    batchSize: 100,
    probeIntervalMs: 0,
    pollIntervalMs: 5_000,
    logger: pino({ level: 'silent' }),
  });
  feed.onBatch((batch) => {
    batches.push(batch);
  });
  // A throwing listener is logged and does not stop the others.
  feed.onBatch(() => {
    throw new Error('listener failure');
  });
});

afterAll(async () => {
  await feed?.close();
  await admin?.end();
  await pool?.end();
  await db?.drop();
});

async function waitFor(markerValue: string, withinMs: number, seen = batches): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < withinMs) {
    if (seen.some((b) => b.changes.some((c) => c.record.includes(markerValue)))) return Date.now() - started;
    await delay(5);
  }
  throw new Error(`${markerValue} not received within ${withinMs} ms`);
}

describe('ChangeFeed', () => {
  it('is woken by NOTIFY well before the poll interval', async () => {
    // Let the feed settle into its 5 s poll wait.
    await delay(300);
    await admin.query(`insert into change_probe (marker) values ('feed-1')`);
    expect(await waitFor('feed-1', 1_000)).toBeLessThan(1_000);
    await delay(300);
    await admin.query(`insert into change_probe (marker) values ('feed-2')`);
    expect(await waitFor('feed-2', 1_000)).toBeLessThan(1_000);
    // Batches arrive in position order and the head follows them.
    for (let i = 1; i < batches.length; i++) {
      expect(comparePositions(batches[i]!.until, batches[i - 1]!.until)).toBeGreaterThanOrEqual(0);
    }
    expect(comparePositions(feed.head, batches[batches.length - 1]!.until)).toBe(0);
  });

  it('reconnects its LISTEN session and reads what was written meanwhile', async () => {
    const killed = await admin.query<{ n: string }>(
      `select count(pg_terminate_backend(pid))::text as n from pg_stat_activity
        where datname = current_database() and application_name = 'sluice-change-feed'`,
    );
    expect(killed.rows[0]?.n).toBe('1');
    await admin.query(`insert into change_probe (marker) values ('feed-3')`);
    expect(await waitFor('feed-3', 2_000)).toBeLessThan(2_000);
    await delay(300);
    const listening = await admin.query<{ n: string }>(
      `select count(*)::text as n from pg_stat_activity
        where datname = current_database() and application_name = 'sluice-change-feed'`,
    );
    expect(listening.rows[0]?.n).toBe('1');
    await admin.query(`insert into change_probe (marker) values ('feed-4')`);
    expect(await waitFor('feed-4', 1_000)).toBeLessThan(1_000);
  });

  it('without NOTIFY, is woken by the snapshot probe well before the poll interval', async () => {
    const probed: ChangeBatch[] = [];
    const prober = await ChangeFeed.start({
      pool,
      listenConnectionString: db.appUrl,
      batchSize: 100,
      probeIntervalMs: 10,
      pollIntervalMs: 5_000,
      logger: pino({ level: 'silent' }),
    });
    prober.onBatch((batch) => {
      probed.push(batch);
    });
    try {
      await delay(300);
      await admin.query(`insert into quiet_probe (marker) values ('probe-1')`);
      expect(await waitFor('probe-1', 1_000, probed)).toBeLessThan(1_000);
      // The NOTIFY-only feed hears nothing of it until its poll.
      await delay(100);
      expect(batches.some((b) => b.changes.some((c) => c.record.includes('probe-1')))).toBe(false);
    } finally {
      await prober.close();
    }
  });
});
