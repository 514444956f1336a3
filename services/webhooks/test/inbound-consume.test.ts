import { webhooks } from '@sluice/proto';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ACME, startWebhooksStack, type WebhooksStack } from './helpers';
import { createSource, eventually, newSecret, post, sourceName } from './inbound/helpers';

// From the sender's POST to a backend service's Consume stream: what the ingress stores is what
// a consumer receives (source, kind, id, headers without the shared secret, the exact body, the
// event type, the typed change of a supabase-database payload, the sender's traceparent).

let stack: WebhooksStack;

beforeAll(async () => {
  stack = await startWebhooksStack({ WEBHOOKS_CONSUMER_POLL_INTERVAL_MS: '200' });
  await stack.pool.query(
    'create table public.wh_orders (id bigint primary key, total numeric not null, paid_at timestamptz)',
  );
});

afterAll(async () => {
  await stack?.close();
});

/**
 * A new consumer of `source` (it receives what arrives after it exists): `send` runs once the
 * consumer is there; resolves with the first `n` events, acknowledged.
 */
async function consume(
  source: string,
  n: number,
  send: () => Promise<void>,
): Promise<webhooks.InboundEvent[]> {
  const client = stack.client(await stack.token('service'));
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 30_000);
  const events: webhooks.InboundEvent[] = [];
  const consumer = `c-${source}`;
  const reading = (async () => {
    for await (const m of client.consume(
      { consumer, sources: [source], maxInFlight: 0, ackTimeoutSeconds: 0 },
      { signal: controller.signal },
    )) {
      if (m.message?.$case !== 'event') continue;
      events.push(m.message.value);
      await client.ack({ consumer, eventIds: [m.message.value.id] });
      if (events.length >= n) return;
    }
  })();
  try {
    await eventually(async () => {
      const { rows } = await stack.pool.query('select 1 from sluice_webhooks.consumers where name = $1', [
        consumer,
      ]);
      return rows.length > 0;
    });
    await send();
    await reading;
  } finally {
    clearTimeout(timer);
    controller.abort();
    await reading.catch(() => {});
  }
  return events;
}

it('delivers a supabase-database webhook to a consumer as a typed change', async () => {
  const name = sourceName('orders');
  await createSource(stack, { name, kind: 'supabase-database', tenantId: ACME, secrets: ['s3cret'] });
  const body =
    '{"type":"UPDATE","table":"wh_orders","schema":"public","record":{"id":9007199254740993,"total":10.50,"paid_at":"2026-11-27T10:00:00.123456+00:00"},"old_record":{"id":9007199254740993,"total":10.50,"paid_at":null}}';
  const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  const [event] = await consume(name, 1, async () => {
    // The catalog learns of the new table after its DDL notification.
    await eventually(async () => {
      const headers = { 'x-webhook-secret': 's3cret', traceparent };
      return (await post(stack.httpUrl, `/webhooks/${name}`, body, headers)).status === 200;
    });
  });
  expect(event).toMatchObject({
    source: name,
    kind: webhooks.SourceKind.SOURCE_KIND_SUPABASE_DATABASE,
    eventType: 'UPDATE',
    traceparent,
    tenantId: ACME,
    json: body,
  });
  expect(Buffer.from(event!.body).toString()).toBe(body);
  expect(event!.headers['x-webhook-secret']).toBeUndefined();
  expect(event!.headers.traceparent).toBe(traceparent);
  expect(event!.change).toMatchObject({
    operation: webhooks.Operation.OPERATION_UPDATE,
    schema: 'public',
    table: 'wh_orders',
    columns: [
      { name: 'id', type: 'int8' },
      { name: 'total', type: 'numeric' },
      { name: 'paid_at', type: 'timestamptz' },
    ],
  });
  expect(event!.change!.record!.values).toEqual([
    { kind: { $case: 'intValue', value: 9007199254740993n } },
    { kind: { $case: 'decimalValue', value: '10.50' } },
    { kind: { $case: 'timestampValue', value: { seconds: 1_795_773_600n, nanos: 123_456_000 } } },
  ]);
  expect(event!.change!.oldRecord!.values[2]).toEqual({ kind: undefined });
});

it('delivers a Standard Webhooks event with its id and type', async () => {
  const secret = newSecret();
  const name = sourceName('std-consume');
  await createSource(stack, { name, kind: 'standard-webhooks', secrets: [secret] });
  const body = '{"type":"invoice.paid","data":{"id":"in_1"}}';
  const at = Math.floor(Date.now() / 1000);
  const headers = {
    'webhook-id': 'msg_consumed',
    'webhook-timestamp': String(at),
    'webhook-signature': new Webhook(secret).sign('msg_consumed', new Date(at * 1000), body),
  };
  const [event] = await consume(name, 1, async () => {
    expect((await post(stack.httpUrl, `/webhooks/${name}`, body, headers)).status).toBe(200);
  });
  expect(event).toMatchObject({
    source: name,
    kind: webhooks.SourceKind.SOURCE_KIND_STANDARD_WEBHOOKS,
    externalId: 'msg_consumed',
    eventType: 'invoice.paid',
    json: body,
  });
  expect(event!.headers['webhook-id']).toBe('msg_consumed');
});
