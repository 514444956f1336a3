import { signToken } from '@sluice/auth';
import { webhooks } from '@sluice/proto';
import { ClientError, Status } from 'nice-grpc';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ACME,
  GLOBEX,
  startWebhooksStack,
  TEST_JWT_SECRET,
  USERS,
  type WebhooksClient,
  type WebhooksStack,
} from './helpers';

// Outside review: every RPC, aimed at ACME's rows by every identity that must not reach them —
// GLOBEX's admin, a plain user, an ACME member who is not admin, tenant_role admin without a
// tenant or with one that is not a uuid, anon, a token for a role outside the allowed ones, and
// a forged service_role token. Afterwards ACME's rows are exactly as they were.

let stack: WebhooksStack;
let acme: WebhooksClient;
const acmeRows = { source: '', endpoint: '', message: '', eventId: '' };

const sign = (claims: Record<string, unknown>, secret = TEST_JWT_SECRET) =>
  signToken(secret, claims, { expiresIn: 600 });

beforeAll(async () => {
  stack = await startWebhooksStack({ WEBHOOKS_HEARTBEAT_MS: '300' });
  acme = stack.client(await stack.token({ admin: ACME }));
  const source = await acme.createSource({
    source: { name: 'acme-review', kind: webhooks.SourceKind.SOURCE_KIND_STANDARD_WEBHOOKS },
  } as webhooks.CreateSourceRequest);
  acmeRows.source = source.source?.id ?? '';
  const endpoint = await acme.createEndpoint({
    endpoint: { url: 'http://127.0.0.1:9/acme', eventTypes: ['*'] },
  } as webhooks.CreateEndpointRequest);
  acmeRows.endpoint = endpoint.endpoint?.id ?? '';
  const published = await acme.publish({
    eventType: 'order.created',
    payloadJson: '{"n":1}',
    idempotencyKey: 'acme-key',
  } as webhooks.PublishRequest);
  acmeRows.message = published.message?.id ?? '';
  // An inbound event, and ACME's consumer (created first: it takes events after it) holding it,
  // leased and not acknowledged.
  expect(await firstMessage(acme, { consumer: 'acme-worker' })).toEqual({ kind: 'heartbeat' });
  const body = '{"type":"acme.thing"}';
  const at = new Date();
  const response = await fetch(`${stack.httpUrl}/webhooks/acme-review`, {
    method: 'POST',
    body,
    headers: {
      'content-type': 'application/json',
      'webhook-id': 'msg_acme_1',
      'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
      'webhook-signature': new Webhook(source.secret).sign('msg_acme_1', at, body),
    },
  });
  expect(response.status).toBe(200);
  let first = await firstMessage(acme, { consumer: 'acme-worker', ackTimeoutSeconds: 3600 });
  for (let i = 0; i < 20 && first.kind === 'heartbeat'; i++)
    first = await firstMessage(acme, { consumer: 'acme-worker', ackTimeoutSeconds: 3600 });
  expect(first).toMatchObject({ kind: 'event' });
  acmeRows.eventId = (first as { id: string }).id;
}, 120_000);

afterAll(async () => {
  await stack?.close();
});

/** The first event or heartbeat of a Consume stream, or its error; the stream is then closed. */
async function firstMessage(
  client: WebhooksClient,
  req: Partial<webhooks.ConsumeRequest>,
): Promise<
  { kind: 'event'; id: string; tenantId: string } | { kind: 'heartbeat' } | { kind: 'error'; code: string }
> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 20_000);
  try {
    for await (const m of client.consume(
      { consumer: '', sources: [], maxInFlight: 0, ackTimeoutSeconds: 0, ...req },
      { signal: controller.signal },
    )) {
      if (m.message?.$case === 'event')
        return { kind: 'event', id: m.message.value.id, tenantId: m.message.value.tenantId };
      return { kind: 'heartbeat' };
    }
    return { kind: 'error', code: 'ENDED' };
  } catch (error) {
    return { kind: 'error', code: error instanceof ClientError ? Status[error.code] : String(error) };
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
}

/** The status code of a call that must fail. */
async function refused(call: Promise<unknown>): Promise<string> {
  const error = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, 'the call should have failed').toBeInstanceOf(ClientError);
  return Status[(error as ClientError).code];
}

const DENIED = ['NOT_FOUND', 'PERMISSION_DENIED', 'UNAUTHENTICATED'];

async function snapshot() {
  const q = async (text: string, values: unknown[] = []) => (await stack.pool.query(text, values)).rows;
  return {
    source: await q(
      'select name, description, enabled, settings, tenant_id, updated_at from sluice_webhooks.sources where id = $1',
      [acmeRows.source],
    ),
    sourceSecrets: await q('select secret, expires_at from sluice_webhooks.secrets where source_id = $1', [
      acmeRows.source,
    ]),
    endpoint: await q(
      'select url, description, headers, enabled, owner_role, owner_claims, event_types, updated_at from sluice_webhooks.endpoints where id = $1',
      [acmeRows.endpoint],
    ),
    endpointSecrets: await q(
      'select secret, expires_at from sluice_webhooks.secrets where endpoint_id = $1',
      [acmeRows.endpoint],
    ),
    acmeMessages: await q(
      "select count(*)::int as n from sluice_webhooks.messages where tenant_id = $1 and event_type <> 'sluice.test'",
      [ACME],
    ),
    testMessages: await q(
      "select count(*)::int as n from sluice_webhooks.messages where event_type = 'sluice.test'",
    ),
    consumerEvents: await q(
      `select ce.acked_at, ce.deliveries from sluice_webhooks.consumer_events ce
         join sluice_webhooks.consumers c on c.id = ce.consumer_id where c.name = 'acme-worker' and c.tenant_id = $1`,
      [ACME],
    ),
    sources: await q('select count(*)::int as n from sluice_webhooks.sources'),
    endpoints: await q('select count(*)::int as n from sluice_webhooks.endpoints'),
    nullTenantMessages: await q(
      'select count(*)::int as n from sluice_webhooks.messages where tenant_id is null',
    ),
  };
}

const ATTACKERS: Record<string, () => Promise<string | undefined>> = {
  'GLOBEX admin': () => stack.token({ admin: GLOBEX }),
  'plain user': () => stack.token('alice'),
  'ACME member (not admin)': () =>
    sign({ sub: USERS.bob, role: 'authenticated', tenant_id: ACME, tenant_role: 'member' }),
  'tenant_role admin without tenant_id': () =>
    sign({ sub: USERS.bob, role: 'authenticated', tenant_role: 'admin' }),
  'tenant_role admin, tenant_id not a uuid': () =>
    sign({ sub: USERS.bob, role: 'authenticated', tenant_id: `${ACME}' or '1'='1`, tenant_role: 'admin' }),
  'tenant_role admin, tenant_id a number': () =>
    sign({ sub: USERS.bob, role: 'authenticated', tenant_id: 1, tenant_role: 'admin' }),
  anon: async () => sign({ role: 'anon' }),
  'no token': async () => undefined,
  'role sluice_authenticator': () =>
    sign({ role: 'sluice_authenticator', tenant_id: ACME, tenant_role: 'admin' }),
  'role postgres': () => sign({ role: 'postgres' }),
  'forged service_role': () => sign({ role: 'service_role' }, 'not-the-secret-not-the-secret-not-the-secret'),
};

describe('ACME rows against every other identity', () => {
  for (const [who, token] of Object.entries(ATTACKERS)) {
    it(`${who}: reads nothing of ACME's, changes nothing, creates nothing for ACME`, async () => {
      const before = await snapshot();
      expect(before.source).toHaveLength(1);
      expect(before.endpoint).toHaveLength(1);
      expect(before.consumerEvents).toEqual([{ acked_at: null, deliveries: 1 }]);
      const c = stack.client(await token());
      const { source, endpoint, message, eventId } = acmeRows;
      const listed = async <T>(call: Promise<T>, pick: (r: T) => string[]) =>
        call.then(pick, () => [] as string[]);

      // Sources.
      expect(DENIED).toContain(await refused(c.getSource({ id: source })));
      expect(DENIED).toContain(
        await refused(
          c.updateSource({ id: source, description: 'x', enabled: false } as webhooks.UpdateSourceRequest),
        ),
      );
      expect(DENIED).toContain(
        await refused(c.rotateSourceSecret({ id: source, secret: '', graceSeconds: 0 })),
      );
      expect(DENIED).toContain(await refused(c.deleteSource({ id: source })));
      expect(
        await listed(c.listSources({ limit: 0, pageToken: '' }), (r) => r.sources.map((s) => s.id)),
      ).not.toContain(source);
      expect(['PERMISSION_DENIED', 'UNAUTHENTICATED']).toContain(
        await refused(
          c.createSource({
            source: { name: `x-${Math.random().toString(36).slice(2, 8)}`, kind: 1, tenantId: ACME },
            secret: '',
          } as webhooks.CreateSourceRequest),
        ),
      );

      // Endpoints.
      expect(DENIED).toContain(await refused(c.getEndpoint({ id: endpoint })));
      expect(DENIED).toContain(
        await refused(
          c.updateEndpoint({
            id: endpoint,
            url: 'http://127.0.0.1:9/stolen',
            enabled: false,
          } as webhooks.UpdateEndpointRequest),
        ),
      );
      expect(DENIED).toContain(await refused(c.rotateEndpointSecret({ id: endpoint, graceSeconds: 0 })));
      expect(DENIED).toContain(await refused(c.sendTestMessage({ endpointId: endpoint })));
      expect(DENIED).toContain(
        await refused(
          c.recoverEndpoint({
            endpointId: endpoint,
            since: { seconds: BigInt(Math.floor(Date.now() / 1000) - 60), nanos: 0 },
          }),
        ),
      );
      expect(DENIED).toContain(await refused(c.deleteEndpoint({ id: endpoint })));
      expect(
        await listed(c.listEndpoints({ limit: 0, pageToken: '' }), (r) => r.endpoints.map((e) => e.id)),
      ).not.toContain(endpoint);
      expect(['PERMISSION_DENIED', 'UNAUTHENTICATED', 'INVALID_ARGUMENT']).toContain(
        await refused(
          c.createEndpoint({
            endpoint: { url: 'http://127.0.0.1:9/x', eventTypes: ['*'], tenantId: ACME },
          } as webhooks.CreateEndpointRequest),
        ),
      );
      expect(['PERMISSION_DENIED', 'UNAUTHENTICATED']).toContain(
        await refused(
          c.createEndpoint({
            endpoint: { url: 'http://127.0.0.1:9/x', eventTypes: ['*'] },
            owner: { role: 'service_role', subject: '', tenantId: '' },
          } as webhooks.CreateEndpointRequest),
        ),
      );

      // Messages and attempts.
      expect(
        await listed(c.listMessages({ endpointId: '', eventType: '', limit: 0, pageToken: '' }), (r) =>
          r.messages.map((m) => m.id),
        ),
      ).not.toContain(message);
      expect(
        await listed(c.listMessages({ endpointId: endpoint, eventType: '', limit: 0, pageToken: '' }), (r) =>
          r.messages.map((m) => m.id),
        ),
      ).toEqual([]);
      expect(
        await listed(c.listAttempts({ messageId: message, endpointId: '', limit: 0, pageToken: '' }), (r) =>
          r.attempts.map((a) => a.id),
        ),
      ).toEqual([]);
      expect(
        await listed(c.listAttempts({ messageId: '', endpointId: '', limit: 0, pageToken: '' }), (r) =>
          r.attempts.map((a) => a.endpointId),
        ),
      ).not.toContain(endpoint);
      expect(DENIED).toContain(await refused(c.replayMessage({ messageId: message, endpointId: '' })));
      expect(DENIED).toContain(await refused(c.replayMessage({ messageId: message, endpointId: endpoint })));
      expect(['PERMISSION_DENIED', 'UNAUTHENTICATED']).toContain(
        await refused(
          c.publish({
            eventType: 'order.created',
            payloadJson: '{}',
            idempotencyKey: '',
            tenantId: ACME,
            orderingKey: '',
          }),
        ),
      );
      // The same idempotency key in another tenant is another message, never ACME's.
      const sameKey = await c
        .publish({
          eventType: 'order.created',
          payloadJson: '{}',
          idempotencyKey: 'acme-key',
          tenantId: '',
          orderingKey: '',
        })
        .catch(() => undefined);
      if (sameKey) {
        expect(sameKey.message?.id).not.toBe(message);
        expect(sameKey.message?.tenantId).not.toBe(ACME);
      }

      // Consumers: ACME's consumer name is its own; ACME's source cannot be named; no ACME event.
      for (const req of [{ consumer: 'acme-worker' }, { consumer: 'acme-worker-2', ackTimeoutSeconds: 1 }]) {
        const got = await firstMessage(c, req);
        if (got.kind === 'event') expect(got.tenantId).not.toBe(ACME);
        if (got.kind === 'error') expect([...DENIED, 'INVALID_ARGUMENT']).toContain(got.code);
      }
      const named = await firstMessage(c, { consumer: 'acme-worker-3', sources: ['acme-review'] });
      expect(named.kind).toBe('error');
      const acked = await c.ack({ consumer: 'acme-worker', eventIds: [eventId] }).catch(() => ({ acked: 0 }));
      expect(acked.acked).toBe(0);

      const after = await snapshot();
      // A GLOBEX admin may create GLOBEX's own rows (the same-key publish); nothing of ACME's.
      if (who === 'GLOBEX admin') {
        after.sources = before.sources;
        after.endpoints = before.endpoints;
      }
      expect(after).toEqual(before);
    }, 120_000);
  }
});
