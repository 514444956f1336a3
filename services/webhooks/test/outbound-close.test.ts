import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { insertEndpoint, startWebhooksStack, type WebhooksStack } from './helpers';

// Shutdown of the delivery worker: it stops claiming, and an attempt in flight finishes and is
// settled before close() resolves (nothing left to a lease when the endpoint answers in time).

let stack: WebhooksStack;
let server: http.Server;
let url = '';
let hits = 0;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    hits++;
    req.resume();
    req.on('end', () => setTimeout(() => res.end('late but fine'), 1_000));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  stack = await startWebhooksStack({ WEBHOOKS_REQUEST_TIMEOUT_MS: '5000', WEBHOOKS_POLL_INTERVAL_MS: '100' });
});

afterAll(async () => {
  await stack?.close();
  server?.closeAllConnections();
  server?.close();
});

describe('closing the worker', () => {
  it('lets the attempt in flight finish and settle, then claims nothing more', async () => {
    await insertEndpoint(stack.pool, url, 'close.test');
    const insert = async () => {
      const { rows: m } = await stack.pool.query<{ id: string }>(
        `insert into sluice_webhooks.messages (event_type, payload) values ('close.test', '{}') returning id`,
      );
      return (m[0] as { id: string }).id;
    };
    const first = await insert();
    const deadline = Date.now() + 10_000;
    while (hits === 0) {
      if (Date.now() > deadline) throw new Error('no request');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const started = Date.now();
    await stack.server.close();
    // It waited for the 1 s answer.
    expect(Date.now() - started).toBeGreaterThanOrEqual(800);
    const status = async (id: string) =>
      (
        await stack.pool.query<{ status: string; lease_token: string | null }>(
          'select status, lease_token from sluice_webhooks.deliveries where message_id = $1',
          [id],
        )
      ).rows[0];
    expect(await status(first)).toEqual({ status: 'succeeded', lease_token: null });
    // Stopped: a new message stays pending.
    const second = await insert();
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await status(second)).toEqual({ status: 'pending', lease_token: null });
    expect(hits).toBe(1);
  });
});
