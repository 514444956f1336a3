import { setTimeout as delay } from 'node:timers/promises';
import { createTestDatabase, type TestDatabase } from '@sluice/testing';
import type pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChangeFeed, estimateChangeLogRows } from '../src/index';
import { appPool, createProbeTable, superClient } from './helpers';

// The feed's lag (events_delivery_lag_seconds) and the change log size estimate
// (events_change_log_rows), against a real feed and log.

let db: TestDatabase;
let pool: pg.Pool;
let admin: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase();
  pool = appPool(db);
  admin = await superClient(db);
  await createProbeTable(admin, 'lag_probe', { notify: true });
});

afterAll(async () => {
  await admin?.end();
  await pool?.end();
  await db?.drop();
});

describe('ChangeFeed.lagSeconds', () => {
  it('is 0 while caught up, grows while a backlog is read in full batches, and returns to 0', async () => {
    const feed = await ChangeFeed.start({
      pool,
      listenConnectionString: db.appUrl,
      batchSize: 1,
      probeIntervalMs: 5,
      pollIntervalMs: 200,
      logger: pino({ level: 'silent' }),
    });
    try {
      let delivered = 0;
      // A slow consumer: 150 ms per batch of one change.
      feed.onBatch(async (batch) => {
        delivered += batch.changes.length;
        if (batch.changes.length > 0) await delay(150);
      });
      await delay(100);
      expect(feed.lagSeconds()).toBe(0);
      await admin.query(`insert into lag_probe (marker) select 'lag-' || g from generate_series(1, 6) g`);
      let maxLag = 0;
      const until = Date.now() + 10_000;
      while (delivered < 6 && Date.now() < until) {
        maxLag = Math.max(maxLag, feed.lagSeconds());
        await delay(20);
      }
      expect(delivered).toBe(6);
      // Six batches of 150 ms: the feed was behind for most of a second.
      expect(maxLag).toBeGreaterThan(0.3);
      const settled = Date.now() + 2_000;
      while (feed.lagSeconds() > 0 && Date.now() < settled) await delay(20);
      expect(feed.lagSeconds()).toBe(0);
    } finally {
      await feed.close();
    }
  });
});

describe('estimateChangeLogRows', () => {
  it('counts a log never analyzed, and follows the planner estimate after ANALYZE', async () => {
    const before = Number((await admin.query('select count(*) from sluice.change_log')).rows[0].count);
    expect(await estimateChangeLogRows(pool)).toBe(before);
    await admin.query(`insert into lag_probe (marker) select 'rows-' || g from generate_series(1, 500) g`);
    await admin.query('analyze sluice.change_log');
    const exact = Number((await admin.query('select count(*) from sluice.change_log')).rows[0].count);
    const estimate = await estimateChangeLogRows(pool);
    expect(Math.abs(estimate - exact)).toBeLessThanOrEqual(exact * 0.1);
  });
});
