import { setTimeout as delay } from 'node:timers/promises';
import { isSluiceError } from '@sluice/core';
import { createTestDatabase, type TestDatabase } from '@sluice/testing';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { comparePositions, currentPosition, purgeChanges, readChanges } from '../src/index';
import { appPool, createProbeTable, superClient } from './helpers';

let db: TestDatabase;
let pool: pg.Pool;
let admin: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase();
  pool = appPool(db);
  admin = await superClient(db);
  await createProbeTable(admin);
});

afterAll(async () => {
  await admin?.end();
  await pool?.end();
  await db?.drop();
});

describe('purgeChanges', () => {
  it('deletes old changes in batches, sets the watermark and expires older positions', async () => {
    const before = await currentPosition(pool);
    await admin.query(`insert into change_probe (marker) select 'p' || g from generate_series(1, 25) g`);
    await currentPosition(pool); // appends the window holding them
    await delay(5);
    // Nothing is old enough for a day's retention.
    expect(await purgeChanges(pool, 86_400_000)).toBe(0);
    const deleted = await purgeChanges(pool, 0, { batchSize: 10 });
    expect(deleted).toBeGreaterThanOrEqual(25); // plus the seed's changes
    const left = await admin.query<{ n: string }>('select count(*)::text as n from sluice.change_log');
    expect(left.rows[0]?.n).toBe('0');
    const mark = await admin.query<{ window_seq: string | null; last_id: string | null }>(
      'select window_seq::text, last_id::text from sluice.change_log_purged',
    );
    expect(mark.rows[0]?.window_seq).not.toBeNull();
    const watermark = { window: BigInt(mark.rows[0]!.window_seq!), id: BigInt(mark.rows[0]!.last_id!) };
    // Windows before the purged one are gone; the purged one stays as the next one's floor.
    const windows = await admin.query<{ min: string }>(
      'select min(seq)::text as min from sluice.change_window',
    );
    expect(windows.rows[0]?.min).toBe(mark.rows[0]?.window_seq);

    const error = await readChanges(pool, before, 10).catch((e: unknown) => e);
    expect(isSluiceError(error)).toBe(true);
    expect((error as { code: string }).code).toBe('OUT_OF_RANGE');
    expect((error as { reason: string }).reason).toBe('SLUICE_POSITION_EXPIRED');

    // A subscriber starting now is not expired, and reads new changes.
    const now = await currentPosition(pool);
    expect(comparePositions(now, watermark)).toBeGreaterThanOrEqual(0);
    await admin.query(`insert into change_probe (marker) values ('after-purge')`);
    let found = false;
    let until = now;
    for (let i = 0; i < 100 && !found; i++) {
      const batch = await readChanges(pool, until, 10);
      found = batch.changes.some((c) => c.record.includes('after-purge'));
      until = batch.until;
      if (!found) await delay(20);
    }
    expect(found).toBe(true);
  });

  it('keeps a position at the end of the purged window valid, and expires one inside it', async () => {
    const before = await currentPosition(pool);
    await admin.query(`insert into change_probe (marker) select 'edge' || g from generate_series(1, 3) g`);
    const end = await currentPosition(pool); // the window holding them ends here
    expect(end.window > before.window).toBe(true);
    await delay(5);
    expect(await purgeChanges(pool, 0)).toBeGreaterThanOrEqual(3);
    const mark = await admin.query<{ window_seq: string; last_id: string }>(
      'select window_seq::text, last_id::text from sluice.change_log_purged',
    );
    expect(BigInt(mark.rows[0]!.window_seq)).toBe(end.window);
    // At the window's end: nothing after it was purged.
    await admin.query(`insert into change_probe (marker) values ('edge-after')`);
    let found = false;
    let until = end;
    for (let i = 0; i < 100 && !found; i++) {
      const batch = await readChanges(pool, until, 10);
      found = batch.changes.some((c) => c.record.includes('edge-after'));
      until = batch.until;
      if (!found) await delay(20);
    }
    expect(found).toBe(true);
    // Inside it: some of what follows is gone.
    const inside = { window: end.window, id: end.id - 1n };
    const error = await readChanges(pool, inside, 10).catch((e: unknown) => e);
    expect((error as { reason?: string }).reason).toBe('SLUICE_POSITION_EXPIRED');
  });

  it('lets only one session purge at a time', async () => {
    const holder = await superClient(db);
    try {
      await holder.query(`select pg_advisory_lock(7355608020250001)`);
      await admin.query(`insert into change_probe (marker) values ('locked-out')`);
      await currentPosition(pool);
      await delay(5);
      expect(await purgeChanges(pool, 0)).toBe(0);
      await holder.query(`select pg_advisory_unlock(7355608020250001)`);
      expect(await purgeChanges(pool, 0)).toBeGreaterThan(0);
    } finally {
      await holder.end();
    }
  });
});
