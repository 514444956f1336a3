import { type AbortOptions, throwIfAborted } from '@sluice/core';
import type pg from 'pg';

// Session advisory lock key held while purging, so only one instance of the service purges.
const PURGE_LOCK_KEY = '7355608020250001';

// One short transaction per batch: writers only append, so deleting old rows never blocks them,
// and the watermark moves in the same transaction as the rows it accounts for.
const PURGE_SQL = `
with doomed as (
  select id from sluice.change_log
   where committed_at < now() - pg_catalog.make_interval(secs => $1::double precision / 1000)
   order by committed_at
   limit $2
), deleted as (
  delete from sluice.change_log c using doomed d where c.id = d.id returning c.xid, c.id
), top as (
  select xid, id from deleted order by xid desc, id desc limit 1
), mark as (
  update sluice.change_log_purged p set xid = top.xid, id = top.id
    from top
   where p.xid is null or (p.xid, p.id) < (top.xid, top.id)
)
select count(*)::text as n from deleted`;

export interface PurgeChangesOptions extends AbortOptions {
  /** Rows deleted per transaction (default 1000). */
  readonly batchSize?: number;
}

/**
 * Deletes changes older than `maxAgeMs` in batches of short transactions and raises the purged
 * watermark (readers below it get SLUICE_POSITION_EXPIRED). Returns the number of rows deleted;
 * 0 without doing anything when another session is purging (pg_try_advisory_lock).
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
      let total = 0;
      for (;;) {
        throwIfAborted(signal);
        const { rows } = await client.query<{ n: string }>(PURGE_SQL, [maxAgeMs, batchSize]);
        const n = Number(rows[0]?.n ?? 0);
        total += n;
        if (n < batchSize) return total;
      }
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
