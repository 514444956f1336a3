import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { metrics } from '@sluice/observability';
import { waitFor as waitUntil } from '@sluice/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { insertEndpoint, startWebhooksStack, type WebhooksStack } from './helpers';

// The per-endpoint circuit breaker against a real dead receiver: after 3 failures in a row
// the endpoint's due deliveries are deferred (not attempted, not lost), one probe goes through
// every WEBHOOKS_BREAKER_RESET_MS, a failed probe reopens it, a successful one closes it and
// everything deferred is delivered.

let stack: WebhooksStack;
let server: http.Server;
let url = '';
let down = true;
const hits: { at: number; ok: boolean }[] = [];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      hits.push({ at: Date.now(), ok: !down });
      res.writeHead(down ? 500 : 200);
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  stack = await startWebhooksStack({
    WEBHOOKS_BREAKER_FAILURES: '3',
    WEBHOOKS_BREAKER_RESET_MS: '3000',
    WEBHOOKS_ENDPOINT_CONCURRENCY: '1',
    WEBHOOKS_RETRY_SCHEDULE: Array(30).fill('0.1').join(','),
    WEBHOOKS_RETRY_JITTER_PERCENT: '0',
    WEBHOOKS_POLL_INTERVAL_MS: '100',
  });
});

afterAll(async () => {
  await stack?.close();
  server?.closeAllConnections();
  server?.close();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** @sluice/testing's waitFor, polling every 25 ms for up to 20 s unless told otherwise. */
const waitFor = (what: string, check: () => Promise<boolean> | boolean, timeoutMs = 20_000) =>
  waitUntil(what, check, { timeoutMs, intervalMs: 25 });

async function breakersOpen(): Promise<number> {
  const m = /^webhooks_breakers_open (\d+)$/m.exec(await metrics.metrics());
  return Number(m?.[1]);
}

describe('per-endpoint circuit breaker', () => {
  it('opens after 3 failures, defers, probes once per reset, reopens on a failed probe, closes on a good one', async () => {
    const endpoint = await insertEndpoint(stack.pool, url, 'breaker.test');
    for (let i = 0; i < 5; i++)
      await stack.pool.query(
        `insert into sluice_webhooks.messages (event_type, payload) values ('breaker.test', $1)`,
        [JSON.stringify({ i })],
      );

    await waitFor('3 failures', () => hits.length >= 3);
    const opened = (hits[2] as { at: number }).at;
    // Open: nothing reaches the receiver although retries are due every 0.1 s.
    await sleep(1_500);
    expect(hits).toHaveLength(3);
    expect(await breakersOpen()).toBe(1);
    const { rows: pending } = await stack.pool.query<{ status: string; n: number }>(
      `select status, count(*)::int as n, sum(attempts)::int as attempts from sluice_webhooks.deliveries
        where endpoint_id = $1 group by status`,
      [endpoint],
    );
    // Deferred, not failed, not attempted more than the 3 that failed.
    expect(pending).toEqual([{ status: 'pending', n: 5, attempts: 3 }]);

    // Half-open after 3 s: exactly one probe, which fails and reopens it.
    await waitFor('the first probe', () => hits.length >= 4);
    const probe1 = (hits[3] as { at: number }).at;
    expect(probe1 - opened).toBeGreaterThanOrEqual(2_950);
    await sleep(1_500);
    expect(hits).toHaveLength(4);

    // The receiver comes back: the next probe succeeds and closes the breaker; the rest follow.
    down = false;
    await waitFor('the second probe', () => hits.length >= 5);
    const probe2 = (hits[4] as { at: number }).at;
    expect(probe2 - probe1).toBeGreaterThanOrEqual(2_950);
    await waitFor('all delivered', async () => {
      const { rows: done } = await stack.pool.query<{ n: number }>(
        `select count(*)::int as n from sluice_webhooks.deliveries where endpoint_id = $1 and status = 'succeeded'`,
        [endpoint],
      );
      return done[0]?.n === 5;
    });
    // After the good probe, no more waiting for resets: the other four well within a reset period.
    expect((hits[hits.length - 1] as { at: number }).at - probe2).toBeLessThan(2_500);
    expect(hits.filter((h) => h.ok)).toHaveLength(5);
    // 3 failures, the failed probe, 5 successes.
    expect(hits).toHaveLength(9);
    expect(await breakersOpen()).toBe(0);
  });
});
