import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { waitFor as waitUntil } from '@sluice/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { messageId } from '../src/ids';
import { insertEndpoint, startWebhooksStack, type WebhooksStack } from './helpers';

// Review: ReplayMessage while the delivery's attempt is in flight. Replay makes the delivery
// pending and due now, but left the lease token as it was: the attempt in flight then settled
// it (succeeded) when it came back, and the replay was lost — the message was not sent again.

let stack: WebhooksStack;
let server: http.Server;
let url = '';
const ids: string[] = [];
/** Answers the request in hand (set while one is held). */
let release: (() => void) | undefined;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      ids.push(String(req.headers['webhook-id']));
      const answer = () => res.end('ok');
      // The first request is held until the test has replayed; the others answer at once.
      if (ids.length === 1) release = answer;
      else answer();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  // One attempt per endpoint at a time: the replayed delivery cannot be claimed again while
  // its first attempt is in flight, so that attempt settles first.
  stack = await startWebhooksStack({ WEBHOOKS_ENDPOINT_CONCURRENCY: '1', WEBHOOKS_POLL_INTERVAL_MS: '100' });
});

afterAll(async () => {
  release?.();
  await stack?.close();
  server?.closeAllConnections();
  server?.close();
});

/** @sluice/testing's waitFor, polling every 25 ms for up to 20 s unless told otherwise. */
const waitFor = (what: string, check: () => Promise<boolean> | boolean, timeoutMs = 20_000) =>
  waitUntil(what, check, { timeoutMs, intervalMs: 25 });

describe('review: replay during an attempt', () => {
  it('a message replayed while its attempt is in flight is sent again after it, same webhook-id', async () => {
    await insertEndpoint(stack.pool, url, 'replay.inflight');
    const { rows: msg } = await stack.pool.query<{ id: string }>(
      `insert into sluice_webhooks.messages (event_type, payload) values ('replay.inflight', '{}') returning id`,
    );
    const message = (msg[0] as { id: string }).id;
    await waitFor('the first request', () => release !== undefined);

    const client = stack.client(await stack.token('service'));
    const replayed = await client.replayMessage({ messageId: messageId(message), endpointId: '' });
    expect(replayed.deliveries).toBe(1);
    release?.();

    await waitFor('the replayed request', () => ids.length >= 2);
    expect(ids).toEqual([messageId(message), messageId(message)]);
    await waitFor('both attempts recorded, the delivery succeeded', async () => {
      const { rows: d } = await stack.pool.query<{ status: string; n: number }>(
        `select d.status, (select count(*)::int from sluice_webhooks.attempts a where a.delivery_id = d.id) as n
           from sluice_webhooks.deliveries d where d.message_id = $1`,
        [message],
      );
      return d[0]?.status === 'succeeded' && d[0]?.n === 2;
    });
  });
});
