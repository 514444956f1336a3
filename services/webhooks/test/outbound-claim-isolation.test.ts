import { createTestDatabase, type TestDatabase } from '@sluice/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ClaimedDelivery, claimDeliveries } from '../src/outbound/delivery-store';
import { insertEndpoint } from './helpers';

// A claim takes each endpoint's due deliveries through that endpoint's own slice of the queue.
// It used to scan all due deliveries by time in one window: an endpoint with an old backlog
// (a dead one whose breaker let one probe through, a slow one one short of its cap) filled the
// window and the others got nothing from that claim; the backlog of an excluded (open) endpoint
// was read and skipped by every claim. In the benchmark with one dead endpoint the queue fell
// 20-40 s behind. No worker runs here: the claims are the test's own.

async function publish(pool: pg.Pool, eventType: string, count: number): Promise<void> {
  await pool.query(
    `insert into sluice_webhooks.messages (event_type, payload)
     select $1, json_build_object('i', g) from generate_series(1, $2::int) g`,
    [eventType, count],
  );
}

function byEndpoint(
  claimed: readonly ClaimedDelivery[],
  names: Record<string, string>,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const d of claimed) {
    const name = names[d.endpointId] ?? d.endpointId;
    out[name] = (out[name] ?? 0) + 1;
  }
  return out;
}

/**
 * Rows of a table read so far (sequential and through indexes), flushed first: `pool` has one
 * connection, so the claims' statistics are this connection's own.
 */
async function rowsRead(pool: pg.Pool, table = 'deliveries'): Promise<number> {
  await pool.query('select pg_stat_force_next_flush()');
  const { rows } = await pool.query<{ n: string }>(
    `select (coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0))::text as n
       from pg_stat_user_tables where schemaname = 'sluice_webhooks' and relname = $1`,
    [table],
  );
  return Number(rows[0]?.n);
}

describe('claims per endpoint', () => {
  let db: TestDatabase;
  let pool: pg.Pool;

  beforeAll(async () => {
    db = await createTestDatabase();
    pool = new pg.Pool({ connectionString: db.url, max: 1 });
  });

  afterAll(async () => {
    await pool?.end();
    await db?.drop();
  });

  it('an old backlog of one endpoint, half-open or open, takes no other endpoint’s place and is not read', async () => {
    const stuck = await insertEndpoint(pool, 'http://127.0.0.1:9/', 'claim.stuck');
    const other = await insertEndpoint(pool, 'http://127.0.0.1:9/', 'claim.other');
    const names = { [stuck]: 'stuck', [other]: 'other' };
    // 5,000 deliveries of the stuck endpoint, due an hour ago: older than anything of the other.
    await publish(pool, 'claim.stuck', 5000);
    await pool.query(
      `update sluice_webhooks.deliveries set next_attempt_at = now() - interval '1 hour' where endpoint_id = $1`,
      [stuck],
    );
    await pool.query('analyze sluice_webhooks.deliveries');
    await publish(pool, 'claim.other', 3);
    const options = { limit: 10, leaseMs: 60_000, perEndpoint: 16 };

    // Half-open: the stuck endpoint may take one delivery (its probe); the other takes all it has.
    const halfOpen = await claimDeliveries(pool, {
      ...options,
      excluded: [],
      limited: new Map([[stuck, 1]]),
    });
    expect(byEndpoint(halfOpen, names)).toEqual({ stuck: 1, other: 3 });

    // Open: nothing of it is claimed, and its 4,999 due deliveries are not read to find that out.
    await publish(pool, 'claim.other', 3);
    const before = await rowsRead(pool);
    const open = await claimDeliveries(pool, { ...options, excluded: [stuck], limited: new Map() });
    const read = (await rowsRead(pool)) - before;
    expect(byEndpoint(open, names)).toEqual({ other: 3 });
    expect(read).toBeGreaterThan(0);
    expect(read).toBeLessThan(100);

    // Closed again: it takes its share (16), the other what is due of it (nothing: all in flight).
    const closed = await claimDeliveries(pool, { ...options, limit: 256, excluded: [], limited: new Map() });
    expect(byEndpoint(closed, names)).toEqual({ stuck: 16 });
  });

  it('reads each due delivery and message about once while the statistics still say nothing is pending', async () => {
    await pool.query('update sluice_webhooks.endpoints set enabled = false');
    const endpoint = await insertEndpoint(pool, 'http://127.0.0.1:9/', 'claim.stale');
    // A queue that has just drained, and was analyzed so: every delivery succeeded.
    await pool.query('alter table sluice_webhooks.deliveries set (autovacuum_enabled = false)');
    await publish(pool, 'claim.stale', 3000);
    await pool.query(`update sluice_webhooks.deliveries set status = 'succeeded' where endpoint_id = $1`, [
      endpoint,
    ]);
    await pool.query('analyze sluice_webhooks.deliveries');
    // Then a burst the statistics do not know of.
    await publish(pool, 'claim.stale', 2000);
    const before = { deliveries: await rowsRead(pool), messages: await rowsRead(pool, 'messages') };
    const claimed = await claimDeliveries(pool, {
      limit: 256,
      leaseMs: 60_000,
      perEndpoint: 256,
      excluded: [],
      limited: new Map(),
    });
    const deliveries = (await rowsRead(pool)) - before.deliveries;
    const messages = (await rowsRead(pool, 'messages')) - before.messages;
    expect(claimed).toHaveLength(256);
    // The candidates, the picks and the updated rows: a few times 256, not 2,000 × 256.
    expect(deliveries).toBeLessThan(2_000);
    expect(messages).toBeLessThan(2_000);
    await pool.query('alter table sluice_webhooks.deliveries reset (autovacuum_enabled)');
  });
});
