import { setTimeout as delay } from 'node:timers/promises';
import { createTestDatabase, loseChangeWindows, type TestDatabase } from '@sluice/testing';
import type pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Change,
  type ChangeBatch,
  ChangeFeed,
  ChangesReason,
  currentPosition,
  type Position,
  readChanges,
} from '../src/index';
import { appPool, createProbeTable, superClient } from './helpers';

// Finding 3 of the fault review: after a crash with synchronous_commit = off, window numbers a
// reader had already read were issued again and readers silently skipped the changes committed
// after recovery. The append now commits synchronously (core migration 000005), and a reader that
// finds the log behind what it read stops with SLUICE_CHANGE_LOG_REGRESSED instead of skipping.
// The crash is simulated the way it looks afterwards: the newest windows, their changes and the
// change ids they used are gone.

let db: TestDatabase;
let pool: pg.Pool;
let admin: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase();
  pool = appPool(db);
  admin = await superClient(db);
  await createProbeTable(admin, 'regress_probe');
});

afterAll(async () => {
  await admin?.end();
  await pool?.end();
  await db?.drop();
});

function marker(change: Change): string | null {
  const i = change.fields.findIndex((f) => f.name === 'marker');
  return change.record[i] ?? null;
}

async function readAll(after: Position): Promise<ChangeBatch> {
  for (let i = 0; ; i++) {
    const batch = await readChanges(pool, after, 100);
    if (batch.changes.length > 0 || i > 50) return batch;
    await delay(10);
  }
}

describe('change windows', () => {
  it('commit synchronously whatever the session or server says', async () => {
    const client = await pool.connect();
    try {
      await client.query('begin');
      await client.query('set local synchronous_commit = off');
      await client.query('select sluice.append_change_window(true)');
      const { rows } = await client.query<{ s: string }>("select current_setting('synchronous_commit') as s");
      await client.query('commit');
      expect(rows[0]?.s).toBe('on');
    } finally {
      client.release();
    }
  });

  it('a reader past windows the log lost stops with an error instead of skipping', async () => {
    const start = await currentPosition(pool);
    await admin.query(`insert into regress_probe (marker) values ('lost')`);
    const first = await readAll(start);
    expect(first.changes.map(marker)).toEqual(['lost']);
    const read = first.until;
    const lostId = first.changes[0]?.position.id as bigint;
    await loseChangeWindows(admin, read.window, lostId);
    // Committed after recovery: it takes the lost change's id, and the next window its number.
    await admin.query(`insert into regress_probe (marker) values ('after-recovery')`);
    await expect(readChanges(pool, read, 100)).rejects.toMatchObject({
      code: 'UNAVAILABLE',
      reason: ChangesReason.logRegressed,
    });
    // The reader's refusal did not issue the lost window number again: the log is still behind.
    const { rows } = await admin.query<{ newest: string }>(
      'select max(seq)::text as newest from sluice.change_window',
    );
    expect(BigInt(rows[0]?.newest ?? '0')).toBeLessThan(read.window);
  });

  it('the change feed reports the loss, even when another reader issued the lost number again', async () => {
    const errors: unknown[] = [];
    const batches: ChangeBatch[] = [];
    const feed = await ChangeFeed.start({
      pool,
      listenConnectionString: db.appUrl,
      batchSize: 100,
      probeIntervalMs: 5,
      pollIntervalMs: 100,
      logger: pino({ level: 'silent' }),
    });
    // The feed reads again only after its listeners return: holding the listener holds the feed
    // between the read of 'feed-lost' and the next one, while the crash happens.
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let seen: Change | undefined;
    feed.onBatch(async (b) => {
      batches.push(b);
      const change = b.changes.find((c) => marker(c) === 'feed-lost');
      if (change) {
        seen = change;
        await held;
      }
    });
    feed.onError((e) => errors.push(e));
    try {
      await admin.query(`insert into regress_probe (marker) values ('feed-lost')`);
      for (let i = 0; !seen; i++) {
        if (i > 500) throw new Error('the feed did not deliver feed-lost');
        await delay(10);
      }
      const lost = seen as Change;
      await loseChangeWindows(admin, lost.position.window, lost.position.id);
      await admin.query(`insert into regress_probe (marker) values ('feed-after-recovery')`);
      // Another instance (a subscriber starting now) appends first: the lost window's number again.
      await currentPosition(pool);
      release();
      for (let i = 0; errors.length === 0; i++) {
        if (i > 300) break;
        await delay(10);
      }
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatchObject({ code: 'UNAVAILABLE', reason: ChangesReason.logRegressed });
      // Nothing was delivered as if the lost window were still the one read.
      const after = batches.flatMap((b) => b.changes).filter((c) => marker(c) === 'feed-after-recovery');
      expect(after).toEqual([]);
    } finally {
      release();
      await feed.close();
    }
  });
});
