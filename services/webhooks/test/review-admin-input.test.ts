import { signToken } from '@sluice/auth';
import { webhooks } from '@sluice/proto';
import { ClientError, Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ACME,
  startWebhooksStack,
  TEST_JWT_SECRET,
  USERS,
  type WebhooksClient,
  type WebhooksStack,
} from './helpers';

// Outside review: hostile or odd values in every string field of the admin API. Each is refused
// as the client's mistake (INVALID_ARGUMENT, naming nothing internal) or stored as given —
// never INTERNAL, never SQL of its own.

let stack: WebhooksStack;
let service: WebhooksClient;
let acme: WebhooksClient;

beforeAll(async () => {
  stack = await startWebhooksStack();
  service = stack.client(await stack.token('service'));
  acme = stack.client(await stack.token({ admin: ACME }));
}, 120_000);

afterAll(async () => {
  await stack?.close();
});

async function code(call: Promise<unknown>): Promise<string> {
  return call.then(
    () => 'OK',
    (e: unknown) => (e instanceof ClientError ? Status[e.code] : `thrown: ${String(e)}`),
  );
}

const token = (parts: unknown) => Buffer.from(JSON.stringify(parts)).toString('base64url');
const INJECTION = "x'); drop table sluice_webhooks.sources; --";

describe('hostile strings', () => {
  it('are refused as invalid or stored verbatim, never INTERNAL', async () => {
    const src = (over: Partial<webhooks.Source>) =>
      ({
        source: { name: 'n-1', kind: webhooks.SourceKind.SOURCE_KIND_STANDARD_WEBHOOKS, ...over },
      }) as webhooks.CreateSourceRequest;
    const results: Record<string, string> = {
      'source name injection': await code(acme.createSource(src({ name: INJECTION }))),
      'source description NUL': await code(
        acme.createSource(src({ name: 'nul-desc', description: 'a\u0000b' })),
      ),
      'source description lone surrogate': await code(
        acme.createSource(src({ name: 'sur-desc', description: 'a\ud800b' })),
      ),
      'hmac prefix NUL': await code(
        acme.createSource({
          source: {
            name: 'nul-prefix',
            kind: webhooks.SourceKind.SOURCE_KIND_HMAC,
            hmac: { header: 'x-sig', algorithm: 0, encoding: 0, prefix: 'sha256=\u0000' },
          },
          secret: '',
        } as webhooks.CreateSourceRequest),
      ),
      'dedupe body path injection': await code(
        acme.createSource(
          src({ name: 'dd-path', dedupe: { from: { $case: 'bodyPath', value: INJECTION } } }),
        ),
      ),
      'dedupe body path NUL': await code(
        acme.createSource(
          src({ name: 'dd-nul', dedupe: { from: { $case: 'bodyPath', value: 'a\u0000.b' } } }),
        ),
      ),
      'keep header injection': await code(acme.createSource(src({ name: 'kh', keepHeaders: [INJECTION] }))),
      'endpoint description NUL': await code(
        acme.createEndpoint({
          endpoint: { url: 'http://127.0.0.1:9/', description: 'a\u0000', eventTypes: ['*'] },
        } as webhooks.CreateEndpointRequest),
      ),
      'endpoint url NUL': await code(
        acme.createEndpoint({
          endpoint: { url: 'http://127.0.0.1:9/\u0000' },
        } as webhooks.CreateEndpointRequest),
      ),
      'endpoint header value CRLF': await code(
        acme.createEndpoint({
          endpoint: { url: 'http://127.0.0.1:9/', headers: { 'x-a': 'b\r\nx-injected: 1' } },
        } as unknown as webhooks.CreateEndpointRequest),
      ),
      'owner subject NUL': await code(
        service.createEndpoint({
          endpoint: { url: 'http://127.0.0.1:9/', eventTypes: ['*'] },
          owner: { role: 'authenticated', subject: 'u\u0000', tenantId: ACME },
        } as webhooks.CreateEndpointRequest),
      ),
      'event type injection': await code(
        acme.publish({
          eventType: INJECTION,
          payloadJson: '{}',
          idempotencyKey: '',
          tenantId: '',
          orderingKey: '',
        }),
      ),
      'idempotency key NUL': await code(
        acme.publish({
          eventType: 'a.b',
          payloadJson: '{}',
          idempotencyKey: 'k\u0000',
          tenantId: '',
          orderingKey: '',
        }),
      ),
      'ordering key NUL': await code(
        acme.publish({
          eventType: 'a.b',
          payloadJson: '{}',
          idempotencyKey: '',
          tenantId: '',
          orderingKey: 'k\u0000',
        }),
      ),
      'payload NUL escape': await code(
        acme.publish({
          eventType: 'a.b',
          payloadJson: '{"a":"\\u0000"}',
          idempotencyKey: '',
          tenantId: '',
          orderingKey: '',
        }),
      ),
      'payload lone surrogate escape': await code(
        acme.publish({
          eventType: 'a.b',
          payloadJson: '{"a":"\\ud800"}',
          idempotencyKey: '',
          tenantId: '',
          orderingKey: '',
        }),
      ),
      'payload nested 100k deep': await code(
        acme.publish({
          eventType: 'a.b',
          payloadJson: `${'['.repeat(100_000)}${']'.repeat(100_000)}`,
          idempotencyKey: '',
          tenantId: '',
          orderingKey: '',
        }),
      ),
      'payload number 1e1000000': await code(
        acme.publish({
          eventType: 'a.b',
          payloadJson: '{"n":1e1000000}',
          idempotencyKey: '',
          tenantId: '',
          orderingKey: '',
        }),
      ),
      'payload over 1 MiB': await code(
        acme.publish({
          eventType: 'a.b',
          payloadJson: JSON.stringify({ s: 'x'.repeat(1024 * 1024) }),
          idempotencyKey: '',
          tenantId: '',
          orderingKey: '',
        }),
      ),
      'list page token injection': await code(
        acme.listSources({ limit: 0, pageToken: token([INJECTION, INJECTION]) }),
      ),
      'list page token not base64': await code(acme.listEndpoints({ limit: 0, pageToken: '%%%' })),
      'messages page token wrong types': await code(
        acme.listMessages({ endpointId: '', eventType: '', limit: 0, pageToken: token([1, 2]) }),
      ),
      'attempts page token past bigint': await code(
        acme.listAttempts({
          messageId: '',
          endpointId: '',
          limit: 0,
          pageToken: token(['9999999999999999999']),
        }),
      ),
      'messages since nanos out of range': await code(
        acme.listMessages({
          endpointId: '',
          eventType: '',
          limit: 0,
          pageToken: '',
          since: { seconds: 0n, nanos: 2_000_000_000 },
        }),
      ),
      'messages since year 30 million': await code(
        acme.listMessages({
          endpointId: '',
          eventType: '',
          limit: 0,
          pageToken: '',
          since: { seconds: 10n ** 15n, nanos: 0 },
        }),
      ),
      'messages since negative nanos': await code(
        acme.listMessages({
          endpointId: '',
          eventType: '',
          limit: 0,
          pageToken: '',
          since: { seconds: 0n, nanos: -1 },
        }),
      ),
      'recover since nanos out of range': await code(
        acme.recoverEndpoint({
          endpointId: '00000000-0000-4000-8000-000000000000',
          since: { seconds: BigInt(Math.floor(Date.now() / 1000)), nanos: 2_000_000_000 },
        }),
      ),
      'ack id past bigint': await code(acme.ack({ consumer: 'c', eventIds: ['9999999999999999999'] })),
      'consumer name injection': await code(acme.ack({ consumer: INJECTION, eventIds: [] })),
      'message id injection': await code(acme.replayMessage({ messageId: INJECTION, endpointId: '' })),
      'uuid with trailing text': await code(
        acme.getSource({ id: '00000000-0000-4000-8000-000000000000; select 1' }),
      ),
    };
    // Nanos past a second are no time: refused, not read as a tenth of it.
    expect(results['messages since nanos out of range']).toBe('INVALID_ARGUMENT');
    expect(results['recover since nanos out of range']).toBe('INVALID_ARGUMENT');
    for (const [what, status] of Object.entries(results))
      expect({ what, status }).toEqual({
        what,
        status: expect.stringMatching(/^(INVALID_ARGUMENT|NOT_FOUND|OK)$/),
      });
    // Nothing of it ran as SQL.
    const { rows } = await stack.pool.query(
      "select to_regclass('sluice_webhooks.sources') is not null as ok",
    );
    expect(rows).toEqual([{ ok: true }]);
  }, 120_000);
});

describe('a tenant admin whose token spells its tenant in upper case', () => {
  it('manages its tenant as the database sees it (auth.tenant_id() reads any case)', async () => {
    const tenant = 'abcdefab-cdef-4abc-8def-abcdefabcdef';
    const lower = stack.client(await stack.token({ admin: tenant }));
    const upper = stack.client(
      await signToken(
        TEST_JWT_SECRET,
        { sub: USERS.alice, role: 'authenticated', tenant_id: tenant.toUpperCase(), tenant_role: 'admin' },
        { expiresIn: 600 },
      ),
    );
    // Its own tenant, named in lower case as the API returns it.
    const source = await upper.createSource({
      source: {
        name: 'upper-src',
        kind: webhooks.SourceKind.SOURCE_KIND_STANDARD_WEBHOOKS,
        tenantId: tenant,
      },
    } as webhooks.CreateSourceRequest);
    expect(source.source?.tenantId).toBe(tenant);
    const endpoint = await upper.createEndpoint({
      endpoint: { url: 'http://127.0.0.1:9/', eventTypes: ['*'] },
    } as webhooks.CreateEndpointRequest);
    expect(endpoint.endpoint?.tenantId).toBe(tenant);
    expect(endpoint.endpoint?.owner?.tenantId).toBe(tenant);
    const published = await upper.publish({
      eventType: 'a.b',
      payloadJson: '{}',
      idempotencyKey: '',
      tenantId: tenant,
      orderingKey: '',
    });
    expect(published.deliveries).toBe(1);
    // And the lower-case admin sees all of it as its tenant's.
    expect((await lower.getEndpoint({ id: endpoint.endpoint?.id ?? '' })).endpoint?.tenantId).toBe(tenant);
  });
});
