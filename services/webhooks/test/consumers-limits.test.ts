import type { webhooks } from '@sluice/proto';
import { Status } from 'nice-grpc';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ACME, startWebhooksStack, type WebhooksStack } from './helpers';

// Consume streams are bounded per identity (a tenant admin) and in total, like event
// subscriptions: beyond the cap a new stream is refused at once with RESOURCE_EXHAUSTED, and a
// stream that ends gives its slot back.

let stack: WebhooksStack;

beforeAll(async () => {
  stack = await startWebhooksStack({ WEBHOOKS_MAX_CONSUME_STREAMS_PER_IDENTITY: '2' });
});

afterAll(async () => {
  await stack?.close();
});

/** Opens a stream and waits for its first message (a heartbeat or an event) or its error. */
function open(client: ReturnType<WebhooksStack['client']>, consumer: string) {
  const controller = new AbortController();
  const first = (async () => {
    const stream = client.consume({ consumer }, { signal: controller.signal });
    const iterator = stream[Symbol.asyncIterator]();
    const started = iterator.next();
    // An open stream sends nothing until there is an event or a heartbeat: a short wait means open.
    return Promise.race([
      started.then((r): webhooks.ConsumeResponse | 'ended' => (r.done ? 'ended' : r.value)),
      new Promise<'open'>((resolve) => setTimeout(() => resolve('open'), 1500)),
    ]);
  })();
  return { first, close: () => controller.abort() };
}

it('refuses a stream beyond the per-identity cap, and frees the slot when one ends', async () => {
  const admin = stack.client(await stack.token({ admin: ACME }));
  const a = open(admin, 'limit-a');
  const b = open(admin, 'limit-b');
  expect(await a.first).toBe('open');
  expect(await b.first).toBe('open');
  const c = open(admin, 'limit-c');
  await expect(c.first).rejects.toMatchObject({ code: Status.RESOURCE_EXHAUSTED });
  a.close();
  // The ended stream's slot is given back (the server notices the cancel at once).
  let reopened: unknown;
  for (let i = 0; i < 20; i++) {
    const d = open(admin, 'limit-d');
    reopened = await d.first.catch((error: unknown) => error);
    d.close();
    if (reopened === 'open') break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  expect(reopened).toBe('open');
  b.close();
  // service_role is bounded by the total only.
  const service = stack.client(await stack.token('service'));
  const streams = ['s1', 's2', 's3'].map((name) => open(service, name));
  for (const s of streams) expect(await s.first).toBe('open');
  for (const s of streams) s.close();
});
