import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createTestDatabase, type TestDatabase, waitFor } from '@sluice/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { claimDeliveries, MAX_CLAIM_BYTES } from '../src/outbound/delivery-store';
import { insertEndpoint, startWebhooksStack, type WebhooksStack } from './helpers';

// Review: a claim reads every claimed delivery's body at once (up to 256). Row-change payloads
// have no size limit, so a backlog of large rows came back in one result of GBs (and again
// after the crash). A claim now stops at MAX_CLAIM_BYTES of payloads, and the worker claims on
// at once when a claim was cut short by it.

const MIB = 1024 * 1024;
/** A payload of about `bytes` bytes as text. */
const big = (bytes: number, i: number) => JSON.stringify({ i, blob: 'x'.repeat(bytes - 30) });

describe('review: claim size', () => {
  let db: TestDatabase;
  let pool: pg.Pool;

  beforeAll(async () => {
    db = await createTestDatabase();
    pool = new pg.Pool({ connectionString: db.url, max: 2 });
  });

  afterAll(async () => {
    await pool?.end();
    await db?.drop();
  });

  it('one claim reads at most MAX_CLAIM_BYTES of payloads (always one), the rest in the next claims', async () => {
    await insertEndpoint(pool, 'http://127.0.0.1:9/', 'claim.big');
    // No worker runs here: claims are the test's own.
    const payload = Math.floor(1.5 * MIB);
    const count = 12;
    for (let i = 0; i < count; i++)
      await pool.query(
        `insert into sluice_webhooks.messages (event_type, payload) values ('claim.big', $1)`,
        [big(payload, i)],
      );
    const options = { limit: 256, leaseMs: 60_000, excluded: [], limited: new Map(), perEndpoint: 256 };
    const first = await claimDeliveries(pool, options);
    const firstBytes = first.reduce((n, d) => n + d.body.length, 0);
    expect(first.length).toBeGreaterThanOrEqual(1);
    // Under the budget before its last pick.
    expect(firstBytes - payload).toBeLessThan(MAX_CLAIM_BYTES + 1024);
    expect(first.length).toBeLessThan(count);
    for (const d of first) expect(d.payloadBytes).toBeGreaterThanOrEqual(payload - 100);
    const seen = new Set(first.map((d) => d.id));
    for (let round = 0; round < count && seen.size < count; round++)
      for (const d of await claimDeliveries(pool, options)) seen.add(d.id);
    expect(seen.size).toBe(count);

    // One message over the budget is still claimed, alone.
    await pool.query(`insert into sluice_webhooks.messages (event_type, payload) values ('claim.big', $1)`, [
      big(MAX_CLAIM_BYTES + MIB, 99),
    ]);
    const huge = await claimDeliveries(pool, options);
    expect(huge).toHaveLength(1);
    expect(JSON.parse(huge[0]?.body ?? '{}').data.i).toBe(99);
  });
});

/** Deliveries of `endpoint` that succeeded. */
async function succeeded(pool: pg.Pool, endpoint: string): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(
    `select count(*)::int as n from sluice_webhooks.deliveries where endpoint_id = $1 and status = 'succeeded'`,
    [endpoint],
  );
  return rows[0]?.n ?? 0;
}

describe('review: claims cut short by size', () => {
  let stack: WebhooksStack;
  let server: http.Server;
  let url = '';
  const received: number[] = [];

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        received.push(Date.now());
        res.end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    // Polling rarely: only a claim made at once after a cut one keeps the backlog moving.
    stack = await startWebhooksStack({ WEBHOOKS_POLL_INTERVAL_MS: '20000' });
  });

  afterAll(async () => {
    await stack?.close();
    server?.closeAllConnections();
    server?.close();
  });

  it('a backlog larger than one claim reads is delivered without waiting for the poll interval', async () => {
    const endpoint = await insertEndpoint(stack.pool, url, 'claim.backlog');
    // 30 × 1 MiB: about 8 per claim.
    await stack.pool.query(
      `insert into sluice_webhooks.messages (event_type, payload)
       select 'claim.backlog', jsonb_build_object('i', i, 'blob', repeat('x', $1)) from generate_series(1, 30) i`,
      [MIB],
    );
    const started = Date.now();
    await waitFor(`all 30 delivered`, async () => (await succeeded(stack.pool, endpoint)) === 30, {
      timeoutMs: 30_000,
      intervalMs: 50,
    });
    expect(received).toHaveLength(30);
    // Four claims or more: at a poll each, that would be a minute.
    expect(Date.now() - started).toBeLessThan(15_000);
  }, 60_000);

  it('a backlog of one endpoint beyond its concurrency is delivered without waiting for the poll interval', async () => {
    const endpoint = await insertEndpoint(stack.pool, url, 'claim.capped');
    // WEBHOOKS_ENDPOINT_CONCURRENCY 16: a claim takes 16 of them; the rest follow as they finish.
    await stack.pool.query(
      `insert into sluice_webhooks.messages (event_type, payload)
       select 'claim.capped', jsonb_build_object('i', i) from generate_series(1, 100) i`,
    );
    const started = Date.now();
    await waitFor(`all 100 delivered`, async () => (await succeeded(stack.pool, endpoint)) === 100, {
      timeoutMs: 30_000,
      intervalMs: 50,
    });
    expect(Date.now() - started).toBeLessThan(15_000);
  }, 60_000);
});
