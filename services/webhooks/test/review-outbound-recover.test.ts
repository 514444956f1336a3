import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { waitFor as waitUntil } from '@sluice/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { messageId } from '../src/ids';
import { insertEndpoint, startWebhooksStack, type WebhooksStack } from './helpers';

// Review: the way back after the worst — a schedule exhausted, a 410 on the breaker's probe —
// through RecoverEndpoint: one more attempt each, same webhook-id, without waiting for a
// breaker that the disabling should have forgotten (an open one holds a recovered delivery
// until its probe: up to WEBHOOKS_BREAKER_RESET_MS).

let stack: WebhooksStack;
let server: http.Server;
let url = '';
/** The status the receiver answers. */
let status = 500;
const got: { id: string; status: number }[] = [];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      got.push({ id: String(req.headers['webhook-id']), status });
      res.writeHead(status);
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  stack = await startWebhooksStack({
    WEBHOOKS_RETRY_SCHEDULE: '0.1,0.1',
    WEBHOOKS_RETRY_JITTER_PERCENT: '0',
    WEBHOOKS_BREAKER_FAILURES: '3',
    // Long: a breaker still open after RecoverEndpoint would hold the delivery for 60 s.
    WEBHOOKS_BREAKER_RESET_MS: '60000',
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

async function delivery(message: string) {
  const { rows } = await stack.pool.query<{ status: string; attempts: number }>(
    'select status, attempts from sluice_webhooks.deliveries where message_id = $1',
    [message],
  );
  return rows[0];
}

describe('review: recovery', () => {
  it('exhausted with the breaker open, then RecoverEndpoint: pending again, held by the open breaker until its probe', async () => {
    const endpoint = await insertEndpoint(stack.pool, url, 'review.recover');
    const { rows: msg } = await stack.pool.query<{ id: string }>(
      `insert into sluice_webhooks.messages (event_type, payload) values ('review.recover', '{}') returning id`,
    );
    const message = (msg[0] as { id: string }).id;
    // 3 attempts (the schedule's 2 retries), 3 failures: failed, and the breaker open.
    await waitFor('the delivery failed', async () => (await delivery(message))?.status === 'failed');
    expect(got).toHaveLength(3);

    status = 200;
    const client = stack.client(await stack.token('service'));
    const recovered = await client.recoverEndpoint({
      endpointId: endpoint,
      since: { seconds: BigInt(Math.floor(Date.now() / 1000) - 3600), nanos: 0 },
    });
    expect(recovered.deliveries).toBe(1);
    // The breaker of this worker is still open (60 s): the recovered delivery waits for its
    // probe. That is the breaker doing its job; the delivery is not lost.
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await delivery(message)).toMatchObject({ status: 'pending', attempts: 3 });
    expect(got).toHaveLength(3);
  });

  it('a 410 answer disables the endpoint and forgets its breaker: RecoverEndpoint delivers at once', async () => {
    status = 500;
    const endpoint = await insertEndpoint(stack.pool, url, 'review.gone');
    const before = got.length;
    // Two failures (the breaker counts them, still closed at 3), then 410 Gone.
    const { rows: msg } = await stack.pool.query<{ id: string }>(
      `insert into sluice_webhooks.messages (event_type, payload) values ('review.gone', '{}') returning id`,
    );
    const message = (msg[0] as { id: string }).id;
    await waitFor('two failures', () => got.length >= before + 2);
    status = 410;
    await waitFor('disabled', async () => {
      const { rows: e } = await stack.pool.query(
        'select enabled from sluice_webhooks.endpoints where id = $1',
        [endpoint],
      );
      return e[0]?.enabled === false;
    });
    // The 410 attempt was the third failure; the delivery failed with it.
    expect(await delivery(message)).toMatchObject({ status: 'failed', attempts: 3 });

    status = 200;
    const client = stack.client(await stack.token('service'));
    await client.recoverEndpoint({
      endpointId: endpoint,
      since: { seconds: BigInt(Math.floor(Date.now() / 1000) - 3600), nanos: 0 },
    });
    await waitFor(
      'delivered after recovery',
      async () => (await delivery(message))?.status === 'succeeded',
      10_000,
    );
    const last = got[got.length - 1];
    expect(last).toEqual({ id: messageId(message), status: 200 });
  });
});
