import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { webhooks } from '@sluice/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ACME,
  GLOBEX,
  rejection,
  startWebhooksStack,
  type WebhooksClient,
  type WebhooksStack,
} from './helpers';

let stack: WebhooksStack;
let service: WebhooksClient;
let acme: WebhooksClient;
let globex: WebhooksClient;
let alice: WebhooksClient;

/** A loopback receiver: records each request's webhook-id; answers with `status`. */
interface Receiver {
  readonly url: string;
  readonly ids: string[];
  /** The last body received per webhook-id. */
  readonly bodies: Map<string, string>;
  status: number;
  close(): Promise<void>;
}

async function startReceiver(): Promise<Receiver> {
  const ids: string[] = [];
  const bodies = new Map<string, string>();
  const receiver = { url: '', ids, bodies, status: 200, close: async () => {} } as Receiver;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      ids.push(String(req.headers['webhook-id']));
      bodies.set(String(req.headers['webhook-id']), Buffer.concat(chunks).toString());
      res.writeHead(receiver.status).end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  (receiver as { url: string }).url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  receiver.close = () => new Promise((resolve) => server.close(() => resolve()));
  return receiver;
}

let receiver: Receiver;

beforeAll(async () => {
  // Retries an hour apart: a failed attempt leaves its delivery pending, untouched during a test.
  stack = await startWebhooksStack({ WEBHOOKS_RETRY_SCHEDULE: '3600' });
  service = stack.client(await stack.token('service'));
  acme = stack.client(await stack.token({ admin: ACME }));
  globex = stack.client(await stack.token({ admin: GLOBEX }));
  alice = stack.client(await stack.token('alice'));
  receiver = await startReceiver();
}, 120_000);

afterAll(async () => {
  await stack?.close();
  await receiver?.close();
});

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await delay(100);
  }
}

async function deliveryStatuses(messageUuid: string, endpointId?: string): Promise<string[]> {
  const { rows } = await stack.pool.query<{ status: string }>(
    'select status from sluice_webhooks.deliveries where message_id = $1 and ($2::uuid is null or endpoint_id = $2) order by id',
    [messageUuid, endpointId ?? null],
  );
  return rows.map((r) => r.status);
}

const uuidOf = (msgId: string) =>
  msgId.slice(4).replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, '$1-$2-$3-$4-$5');

describe('Publish', () => {
  it('reaches the subscribed enabled endpoints of the tenant, exactly as sent', async () => {
    const paid = await acme.createEndpoint({
      endpoint: { url: receiver.url, eventTypes: ['invoice.paid'] } as webhooks.Endpoint,
      secret: '',
    } as webhooks.CreateEndpointRequest);
    const all = await acme.createEndpoint({
      endpoint: { url: receiver.url, eventTypes: ['*'] } as webhooks.Endpoint,
    } as webhooks.CreateEndpointRequest);
    await acme.createEndpoint({
      endpoint: { url: receiver.url, eventTypes: ['invoice.created'] } as webhooks.Endpoint,
    } as webhooks.CreateEndpointRequest);
    await globex.createEndpoint({
      endpoint: { url: receiver.url, eventTypes: ['*'] } as webhooks.Endpoint,
    } as webhooks.CreateEndpointRequest);

    const payload =
      '{"amount": 123456789012345678901234567890, "ratio": 0.100000000000000000000000000001, "n": [1e2]}';
    const published = await acme.publish({
      eventType: 'invoice.paid',
      payloadJson: payload,
      idempotencyKey: '',
      tenantId: '',
      orderingKey: '',
    });
    expect(published.duplicate).toBe(false);
    expect(published.deliveries).toBe(2);
    const message = published.message as webhooks.Message;
    expect(message.tenantId).toBe(ACME);
    expect(message.deliveries.map((d) => d.endpointId).sort()).toEqual(
      [paid.endpoint?.id, all.endpoint?.id].sort(),
    );
    expect(message.payloadJson).toContain('"amount": 123456789012345678901234567890');
    expect(message.payloadJson).toContain('"ratio": 0.100000000000000000000000000001');
    expect(message.payloadJson.startsWith('{"type":"invoice.paid","timestamp":"')).toBe(true);
    const { rows } = await stack.pool.query(
      "select payload->>'amount' as amount from sluice_webhooks.messages where id = $1",
      [uuidOf(message.id)],
    );
    expect(rows).toEqual([{ amount: '123456789012345678901234567890' }]);

    // Delivered: the receiver saw its webhook-id twice (two endpoints); ListMessages and
    // ListAttempts show it.
    await until('both deliveries', async () =>
      (await deliveryStatuses(uuidOf(message.id))).every((s) => s === 'succeeded') ? true : undefined,
    );
    expect(receiver.ids.filter((id) => id === message.id)).toHaveLength(2);
    // Message.payload_json is the body the endpoints received, byte for byte.
    expect(receiver.bodies.get(message.id)).toBe(message.payloadJson);
    const listed = await acme.listMessages({
      endpointId: paid.endpoint?.id ?? '',
      eventType: '',
      limit: 0,
      pageToken: '',
    } as webhooks.ListMessagesRequest);
    expect(listed.messages.map((m) => m.id)).toEqual([message.id]);
    expect(listed.messages[0]?.deliveries).toEqual([
      expect.objectContaining({
        endpointId: paid.endpoint?.id,
        status: webhooks.DeliveryStatus.DELIVERY_STATUS_SUCCEEDED,
        attempts: 1,
      }),
    ]);
    const attempts = await acme.listAttempts({
      messageId: message.id,
      endpointId: '',
      limit: 0,
      pageToken: '',
    });
    expect(attempts.attempts).toHaveLength(2);
    expect(attempts.attempts[0]).toMatchObject({
      messageId: message.id,
      attempt: 1,
      statusCode: 200,
      outcome: webhooks.AttemptOutcome.ATTEMPT_OUTCOME_SUCCEEDED,
    });
    // GLOBEX sees neither the message nor its attempts.
    expect((await globex.listMessages({} as webhooks.ListMessagesRequest)).messages).toEqual([]);
    expect(
      (await globex.listAttempts({ messageId: message.id, endpointId: '', limit: 0, pageToken: '' }))
        .attempts,
    ).toEqual([]);
    expect((await rejection(globex.replayMessage({ messageId: message.id, endpointId: '' }))).code).toBe(
      'NOT_FOUND',
    );
    // The tests below use endpoints of their own.
    await acme.deleteEndpoint({ id: all.endpoint?.id ?? '' });
  });

  it('creates one message for 10 concurrent calls with the same idempotency key', async () => {
    const call = () =>
      acme.publish({
        eventType: 'order.created',
        payloadJson: '{"order": 1}',
        idempotencyKey: 'order-1',
        tenantId: '',
        orderingKey: '',
      });
    const results = await Promise.all(Array.from({ length: 10 }, call));
    expect(new Set(results.map((r) => r.message?.id)).size).toBe(1);
    expect(results.filter((r) => !r.duplicate)).toHaveLength(1);
    const { rows } = await stack.pool.query(
      "select count(*)::int as n from sluice_webhooks.messages where idempotency_key = 'order-1'",
    );
    expect(rows).toEqual([{ n: 1 }]);
    // Per tenant: GLOBEX's key of the same text is its own message.
    const other = await globex.publish({
      eventType: 'order.created',
      payloadJson: '{}',
      idempotencyKey: 'order-1',
      tenantId: '',
      orderingKey: '',
    });
    expect(other.duplicate).toBe(false);
    expect(other.message?.id).not.toBe(results[0]?.message?.id);
  });

  it('service_role publishes for a tenant; plain users cannot publish; input is checked', async () => {
    const forGlobex = await service.publish({
      eventType: 'plan.changed',
      payloadJson: '{}',
      idempotencyKey: '',
      tenantId: GLOBEX,
      orderingKey: '',
    });
    expect(forGlobex.message?.tenantId).toBe(GLOBEX);
    expect(forGlobex.deliveries).toBe(1);
    const base = { eventType: 'a.b', payloadJson: '{}', idempotencyKey: '', tenantId: '', orderingKey: '' };
    expect((await rejection(alice.publish(base))).code).toBe('PERMISSION_DENIED');
    expect(await rejection(acme.publish({ ...base, tenantId: GLOBEX }))).toEqual({
      code: 'PERMISSION_DENIED',
      fields: ['tenant_id'],
    });
    expect(await rejection(acme.publish({ ...base, eventType: 'bad type' }))).toEqual({
      code: 'INVALID_ARGUMENT',
      fields: ['event_type'],
    });
    expect(await rejection(acme.publish({ ...base, payloadJson: '{"a": 1,}' }))).toEqual({
      code: 'INVALID_ARGUMENT',
      fields: ['payload_json'],
    });
    expect(await rejection(acme.publish({ ...base, payloadJson: '' }))).toEqual({
      code: 'INVALID_ARGUMENT',
      fields: ['payload_json'],
    });
    expect(await rejection(acme.publish({ ...base, idempotencyKey: 'k'.repeat(256) }))).toEqual({
      code: 'INVALID_ARGUMENT',
      fields: ['idempotency_key'],
    });
  });
});

describe('ReplayMessage and RecoverEndpoint', () => {
  it('replay sends a delivered message again with the same webhook-id', async () => {
    const ep = await acme.createEndpoint({
      endpoint: { url: receiver.url, eventTypes: ['replay.me'] } as webhooks.Endpoint,
    } as webhooks.CreateEndpointRequest);
    const published = await acme.publish({
      eventType: 'replay.me',
      payloadJson: '{"x": 1}',
      idempotencyKey: '',
      tenantId: '',
      orderingKey: '',
    });
    const id = published.message?.id ?? '';
    await until('first delivery', async () =>
      (await deliveryStatuses(uuidOf(id)))[0] === 'succeeded' ? true : undefined,
    );
    const replayed = await acme.replayMessage({ messageId: id, endpointId: ep.endpoint?.id ?? '' });
    expect(replayed.deliveries).toBe(1);
    await until('the replay', async () =>
      receiver.ids.filter((x) => x === id).length === 2 ? true : undefined,
    );
    await until('replayed delivery settled', async () =>
      (await deliveryStatuses(uuidOf(id)))[0] === 'succeeded' ? true : undefined,
    );
    expect(await rejection(acme.replayMessage({ messageId: 'msg_nope', endpointId: '' }))).toEqual({
      code: 'INVALID_ARGUMENT',
      fields: ['message_id'],
    });
    expect(
      (await rejection(acme.replayMessage({ messageId: `msg_${'0'.repeat(32)}`, endpointId: '' }))).code,
    ).toBe('NOT_FOUND');
  });

  it('recover makes failed deliveries since the time pending again and enables the endpoint; 14 days at most', async () => {
    receiver.status = 500;
    const ep = await acme.createEndpoint({
      endpoint: { url: receiver.url, eventTypes: ['recover.me'] } as webhooks.Endpoint,
    } as webhooks.CreateEndpointRequest);
    const endpointId = ep.endpoint?.id ?? '';
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const p = await acme.publish({
        eventType: 'recover.me',
        payloadJson: `{"i": ${i}}`,
        idempotencyKey: '',
        tenantId: '',
        orderingKey: '',
      });
      ids.push(uuidOf(p.message?.id ?? ''));
    }
    // Each fails once (500) and waits for its retry an hour later.
    await until('first attempts', async () => {
      const { rows } = await stack.pool.query(
        'select count(*)::int as n from sluice_webhooks.attempts where endpoint_id = $1',
        [endpointId],
      );
      return rows[0].n === 3 ? true : undefined;
    });
    // As if their retries were exhausted and the endpoint disabled, the oldest three days ago.
    await stack.pool.query(
      `update sluice_webhooks.deliveries set status = 'failed', updated_at = now() where endpoint_id = $1`,
      [endpointId],
    );
    await stack.pool.query(
      `update sluice_webhooks.deliveries set created_at = now() - interval '3 days' where message_id = $1`,
      [ids[0]],
    );
    await stack.pool.query(
      `update sluice_webhooks.endpoints set enabled = false, disabled_reason = 'failing', failing_since = now() - interval '5 days'
        where id = $1`,
      [endpointId],
    );
    receiver.status = 200;
    const dayAgo = Math.floor(Date.now() / 1000) - 86_400;
    const recovered = await acme.recoverEndpoint({
      endpointId,
      since: { seconds: BigInt(dayAgo), nanos: 0 },
    });
    expect(recovered.deliveries).toBe(2);
    const { rows: endpointRows } = await stack.pool.query(
      'select enabled, disabled_reason, failing_since from sluice_webhooks.endpoints where id = $1',
      [endpointId],
    );
    expect(endpointRows).toEqual([{ enabled: true, disabled_reason: null, failing_since: null }]);
    await until('recovered deliveries', async () => {
      const statuses = [
        ...(await deliveryStatuses(ids[1] as string)),
        ...(await deliveryStatuses(ids[2] as string)),
      ];
      return statuses.every((s) => s === 'succeeded') ? true : undefined;
    });
    // The one before `since` is left failed.
    expect(await deliveryStatuses(ids[0] as string)).toEqual(['failed']);

    const fifteenDays = Math.floor(Date.now() / 1000) - 15 * 86_400;
    expect(
      await rejection(
        acme.recoverEndpoint({ endpointId, since: { seconds: BigInt(fifteenDays), nanos: 0 } }),
      ),
    ).toEqual({
      code: 'INVALID_ARGUMENT',
      fields: ['since'],
    });
    expect(await rejection(acme.recoverEndpoint({ endpointId, since: undefined }))).toEqual({
      code: 'INVALID_ARGUMENT',
      fields: ['since'],
    });
    expect(
      (await rejection(globex.recoverEndpoint({ endpointId, since: { seconds: BigInt(dayAgo), nanos: 0 } })))
        .code,
    ).toBe('NOT_FOUND');
  });
});
