import pg from 'pg';
import { claimDeliveries } from '../services/webhooks/src/outbound/delivery-store';
import { createBenchDatabase } from './bench-database';

const CLAIMS_PER_SIZE = 30;
const ENDPOINT_COUNTS = [100, 1_000, 10_000];

/**
 * What one delivery claim costs by the number of enabled endpoints (a claim probes each one's
 * slice of the queue): the median of 30 claims of 256 due deliveries (spread over 100 of the
 * endpoints; each claim takes them again, their lease being 1 ms), and of 30 claims with nothing
 * due. Its own database, no service: the claims are the bench's own.
 */
export async function runClaimCost(adminUrl: string | undefined): Promise<Record<string, number>> {
  const db = await createBenchDatabase(adminUrl);
  const pool = new pg.Pool({ connectionString: db.url, max: 1 });
  pool.on('error', () => {});
  const figures: Record<string, number> = {};
  const claim = () =>
    claimDeliveries(pool, { limit: 256, leaseMs: 1, excluded: [], limited: new Map(), perEndpoint: 16 });
  const median = async (fn: () => Promise<unknown>) => {
    const times: number[] = [];
    for (let i = 0; i < CLAIMS_PER_SIZE; i++) {
      const started = performance.now();
      await fn();
      times.push(performance.now() - started);
    }
    times.sort((a, b) => a - b);
    return times[Math.floor(times.length / 2)] ?? Number.NaN;
  };
  try {
    let created = 0;
    console.log('enabled endpoints  claim of 256 ms  claim of nothing ms');
    for (const n of ENDPOINT_COUNTS) {
      await pool.query(
        `insert into sluice_webhooks.endpoints (url, event_types, owner_role)
         select 'http://127.0.0.1:9/', array['claims.' || g], 'service_role' from generate_series($1::int + 1, $2::int) g`,
        [created, n],
      );
      created = n;
      await pool.query(`update sluice_webhooks.deliveries set status = 'succeeded' where status = 'pending'`);
      await pool.query(
        `insert into sluice_webhooks.messages (event_type, payload)
         select 'claims.' || (g % 100 + 1), '{}' from generate_series(1, 256) g`,
      );
      await pool.query('analyze sluice_webhooks.endpoints');
      await pool.query('analyze sluice_webhooks.deliveries');
      const full = await median(claim);
      await pool.query(`update sluice_webhooks.deliveries set status = 'succeeded' where status = 'pending'`);
      const empty = await median(claim);
      console.log(`${String(n).padEnd(17)}  ${full.toFixed(2).padEnd(15)}  ${empty.toFixed(2)}`);
      figures[`claim_256_ms_${n}_endpoints`] = Math.round(full * 100) / 100;
      figures[`claim_empty_ms_${n}_endpoints`] = Math.round(empty * 100) / 100;
    }
  } finally {
    await pool.end();
    await db.close();
  }
  return figures;
}
