import { type AbortOptions, throwIfAborted } from '@sluice/core';
import type pg from 'pg';

// Session advisory lock key held while purging, so only one instance of the service purges.
const PURGE_LOCK_KEY = '7355608020250001';

// The newest window created before the cutoff (found by the created_at index): its changes, and
// every earlier window's, committed before it was created, so are older than the retention.
// None when it is already the purged one (or older).
const PICK_SQL = `
select w.seq::text, w.boundary::text, w.last_id::text, w.created_at::text
  from sluice.change_window w
 where w.created_at < now() - pg_catalog.make_interval(secs => $1::double precision / 1000)
   and w.seq > coalesce((select p.window_seq from sluice.change_log_purged p), -1)
 order by w.created_at desc
 limit 1`;

// The watermark moves before any row goes, in the transaction that deletes the first batch, so
// a reader that could see a row missing also sees that its position has expired.
const MARK_SQL = `update sluice.change_log_purged set window_seq = $1::bigint, last_id = $2::bigint`;

// One short transaction per batch: writers only append, so deleting old rows never blocks them.
// The committed_at index finds the old rows; the boundary keeps those of later windows.
const DELETE_SQL = `
with doomed as (
  select id from sluice.change_log
   where committed_at < $1::timestamptz
     and pg_catalog.pg_visible_in_snapshot(xid, $2::pg_snapshot)
   order by committed_at
   limit $3
)
delete from sluice.change_log c using doomed d where c.id = d.id`;

export interface PurgeChangesOptions extends AbortOptions {
  /** Rows deleted per transaction (default 1000). */
  readonly batchSize?: number;
}

/**
 * Deletes changes older than `maxAgeMs`, whole change windows at a time (the newest window
 * created before the cutoff and all before it), in batches of short transactions, and raises the
 * purged watermark (positions before that window's end get SLUICE_POSITION_EXPIRED). Returns the
 * number of rows deleted; 0 without doing anything when another session is purging
 * (pg_try_advisory_lock).
 *
 * Cancellation: `signal` is checked between batches; a batch in flight completes.
 */
export async function purgeChanges(
  pool: pg.Pool,
  maxAgeMs: number,
  { batchSize = 1000, signal }: PurgeChangesOptions = {},
): Promise<number> {
  if (!(maxAgeMs >= 0)) throw new RangeError(`maxAgeMs must be >= 0: ${maxAgeMs}`);
  throwIfAborted(signal);
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    const lock = await client.query<{ ok: string | boolean }>(
      'select pg_try_advisory_lock($1::bigint)::text as ok',
      [PURGE_LOCK_KEY],
    );
    if (String(lock.rows[0]?.ok) !== 'true') return 0;
    try {
      const { rows } = await client.query<{
        seq: string;
        boundary: string;
        last_id: string;
        created_at: string;
      }>(PICK_SQL, [maxAgeMs]);
      const window = rows[0];
      if (!window) return 0;
      const deleteBatch = async () => {
        const result = await client.query(DELETE_SQL, [window.created_at, window.boundary, batchSize]);
        return result.rowCount ?? 0;
      };
      await client.query('begin');
      let total = 0;
      let n: number;
      try {
        await client.query(MARK_SQL, [window.seq, window.last_id]);
        n = await deleteBatch();
        await client.query('commit');
      } catch (error) {
        await client.query('rollback').catch(() => {});
        throw error;
      }
      total += n;
      while (n === batchSize) {
        throwIfAborted(signal);
        n = await deleteBatch();
        total += n;
      }
      // Earlier windows are no longer needed: the purged window's boundary is the next one's floor.
      await client.query('delete from sluice.change_window where seq < $1::bigint', [window.seq]);
      return total;
    } finally {
      await client.query('select pg_advisory_unlock($1::bigint)', [PURGE_LOCK_KEY]).catch((error: Error) => {
        // The connection is unusable; dropping it releases the session lock.
        broken = error;
      });
    }
  } finally {
    client.release(broken);
  }
}
