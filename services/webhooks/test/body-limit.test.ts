import { ConfigError } from '@sluice/core';
import { webhooks } from '@sluice/proto';
import { Status } from 'nice-grpc';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadWebhooksConfig } from '../src/config';
import { startWebhooksStack, TEST_JWT_SECRET, type WebhooksStack } from './helpers';
import { eventually, newSecret, post, sourceName } from './inbound/helpers';

// A consumed event carries its body twice (the bytes, and the JSON text): a source may accept at
// most what still fits one gRPC message, or the event could be stored and never consumed (the
// stream failing with RESOURCE_EXHAUSTED each time it is offered).

const CEILING = Math.floor((4 * 1024 * 1024 - 64 * 1024) / 2); // default MAX_MESSAGE_BYTES

describe('the body limit and the gRPC message size', () => {
  const env = { DATABASE_URL: 'postgres://u@127.0.0.1:5432/db', JWT_SECRET: TEST_JWT_SECRET };

  it('WEBHOOKS_MAX_BODY_BYTES may not exceed (MAX_MESSAGE_BYTES − 64 KiB) / 2', () => {
    expect(loadWebhooksConfig(env).inbound.maxSourceBodyBytes).toBe(CEILING);
    expect(() => loadWebhooksConfig({ ...env, WEBHOOKS_MAX_BODY_BYTES: String(CEILING + 1) })).toThrow(
      /WEBHOOKS_MAX_BODY_BYTES .* must not exceed .*MAX_MESSAGE_BYTES/,
    );
    expect(() => loadWebhooksConfig({ ...env, WEBHOOKS_MAX_BODY_BYTES: String(CEILING + 1) })).toThrow(
      ConfigError,
    );
    // A larger message size raises the ceiling with it.
    const larger = loadWebhooksConfig({
      ...env,
      MAX_MESSAGE_BYTES: String(16 * 1024 * 1024),
      WEBHOOKS_MAX_BODY_BYTES: String(4 * 1024 * 1024),
    });
    expect(larger.inbound.maxBodyBytes).toBe(4 * 1024 * 1024);
  });
});

describe('a source at the ceiling', () => {
  let stack: WebhooksStack;

  beforeAll(async () => {
    stack = await startWebhooksStack({ WEBHOOKS_CONSUMER_POLL_INTERVAL_MS: '200' });
  });

  afterAll(async () => {
    await stack?.close();
  });

  it('refuses max_body_bytes above it, and an event of that size is consumed whole', async () => {
    const client = stack.client(await stack.token('service'));
    const name = sourceName('ceiling');
    const secret = newSecret();
    const source = (kind: webhooks.SourceKind, maxBodyBytes: number) => ({
      source: { name, kind, maxBodyBytes },
      secret,
    });
    await expect(
      client.createSource(source(webhooks.SourceKind.SOURCE_KIND_STANDARD_WEBHOOKS, CEILING + 1)),
    ).rejects.toMatchObject({
      code: Status.INVALID_ARGUMENT,
      details: expect.stringContaining(String(CEILING)),
    });
    await client.createSource(source(webhooks.SourceKind.SOURCE_KIND_STANDARD_WEBHOOKS, CEILING));

    // A consumer first (it receives what arrives after it exists), then the largest body.
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), 60_000);
    const received: webhooks.InboundEvent[] = [];
    const reading = (async () => {
      for await (const m of client.consume(
        { consumer: `c-${name}`, sources: [name] },
        { signal: controller.signal },
      )) {
        if (m.message?.$case !== 'event') continue;
        received.push(m.message.value);
        await client.ack({ consumer: `c-${name}`, eventIds: [m.message.value.id] });
        return;
      }
    })();
    try {
      await eventually(async () => {
        const { rows } = await stack.pool.query('select 1 from sluice_webhooks.consumers where name = $1', [
          `c-${name}`,
        ]);
        return rows.length > 0;
      });
      const prefix = '{"type":"big","data":"';
      const body = `${prefix}${'x'.repeat(CEILING - prefix.length - 2)}"}`;
      expect(Buffer.byteLength(body)).toBe(CEILING);
      const id = `msg_ceiling_${Date.now()}`;
      const timestamp = new Date();
      const signature = new Webhook(secret).sign(id, timestamp, body);
      const answer = await post(stack.httpUrl, `/webhooks/${name}`, body, {
        'webhook-id': id,
        'webhook-timestamp': String(Math.floor(timestamp.getTime() / 1000)),
        'webhook-signature': signature,
      });
      expect(answer.status).toBe(200);
      await reading;
    } finally {
      clearTimeout(timer);
      controller.abort();
    }
    expect(received).toHaveLength(1);
    expect(received[0]?.body.length).toBe(CEILING);
    expect(received[0]?.json.length).toBe(CEILING);
  });
});
