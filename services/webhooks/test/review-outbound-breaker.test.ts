import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { waitFor as waitUntil } from '@sluice/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { insertEndpoint, startWebhooksStack, type WebhooksStack } from './helpers';

// Review: the breaker's half-open probe against outcomes that are neither a success nor a
// counted failure. A probe refused by the SSRF guard ('blocked', deliberately not counted)
// left the breaker "probing" for ever, so the endpoint was excluded from every later claim of
// that worker: after its URL was fixed, nothing was delivered to it again until a restart.

let stack: WebhooksStack;
let server: http.Server;
let port = 0;
let down = true;
const hits: { ok: boolean; id: string }[] = [];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      hits.push({ ok: !down, id: String(req.headers['webhook-id']) });
      res.writeHead(down ? 500 : 200);
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
  stack = await startWebhooksStack({
    // Only the receiver's port: any other port on loopback is refused by the guard.
    WEBHOOKS_ALLOWED_HOSTS: `127.0.0.1:${port}`,
    WEBHOOKS_BREAKER_FAILURES: '1',
    WEBHOOKS_BREAKER_RESET_MS: '500',
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

/** @sluice/testing's waitFor, polling every 25 ms for up to 20 s unless told otherwise. */
const waitFor = (what: string, check: () => Promise<boolean> | boolean, timeoutMs = 20_000) =>
  waitUntil(what, check, { timeoutMs, intervalMs: 25 });

async function deliveryOf(message: string) {
  const { rows } = await stack.pool.query<{ status: string; attempts: number }>(
    'select status, attempts from sluice_webhooks.deliveries where message_id = $1',
    [message],
  );
  return rows[0];
}

async function publish(eventType: string): Promise<string> {
  const { rows } = await stack.pool.query<{ id: string }>(
    `insert into sluice_webhooks.messages (event_type, payload) values ($1, '{}') returning id`,
    [eventType],
  );
  return (rows[0] as { id: string }).id;
}

describe('review: breaker probe outcomes', () => {
  it('a half-open probe refused by the SSRF guard ends the probe: once the URL is fixed, deliveries flow again', async () => {
    const good = `http://127.0.0.1:${port}/`;
    const endpoint = await insertEndpoint(stack.pool, good, 'review.probe');

    // One 500 opens the breaker (failures 1); while open, the URL moves to a refused port.
    const first = await publish('review.probe');
    await waitFor('the first failure', () => hits.length >= 1);
    await stack.pool.query('update sluice_webhooks.endpoints set url = $2 where id = $1', [
      endpoint,
      `http://127.0.0.1:${port === 1 ? 2 : 1}/`,
    ]);
    // Half-open after 0.5 s: the probe is refused (blocked) and fails its delivery at once.
    await waitFor('the blocked probe', async () => (await deliveryOf(first))?.status === 'failed');
    const { rows: attempts } = await stack.pool.query<{ outcome: string }>(
      'select outcome from sluice_webhooks.attempts where message_id = $1 order by attempt',
      [first],
    );
    expect(attempts.map((a) => a.outcome)).toEqual(['http_error', 'blocked']);

    // The admin fixes the URL and the receiver is up: the next message is delivered.
    down = false;
    await stack.pool.query('update sluice_webhooks.endpoints set url = $2 where id = $1', [endpoint, good]);
    const second = await publish('review.probe');
    await waitFor(
      'the next message delivered',
      async () => (await deliveryOf(second))?.status === 'succeeded',
      10_000,
    );
    expect(hits.filter((h) => h.ok)).toHaveLength(1);
  });
});
