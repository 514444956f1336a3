import { Operator, webhooks } from '@sluice/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ACME,
  GLOBEX,
  rejection,
  startWebhooksStack,
  USERS,
  type WebhooksClient,
  type WebhooksStack,
} from './helpers';

let stack: WebhooksStack;
let service: WebhooksClient;
let acme: WebhooksClient;
let globex: WebhooksClient;
let alice: WebhooksClient;
let anon: WebhooksClient;

beforeAll(async () => {
  stack = await startWebhooksStack();
  service = stack.client(await stack.token('service'));
  acme = stack.client(await stack.token({ admin: ACME }));
  globex = stack.client(await stack.token({ admin: GLOBEX, sub: USERS.bob }));
  alice = stack.client(await stack.token('alice'));
  anon = stack.client();
}, 120_000);

afterAll(async () => {
  await stack?.close();
});

const endpoint = (url: string, extra: Partial<webhooks.Endpoint> = {}): webhooks.CreateEndpointRequest =>
  ({ endpoint: { url, eventTypes: ['*'], ...extra } }) as webhooks.CreateEndpointRequest;

const posts = (filter?: webhooks.TableSelection['filter']): webhooks.TableSelection => ({
  schema: 'public',
  table: 'posts',
  operations: [webhooks.Operation.OPERATION_INSERT],
  filter,
});

describe('endpoints under RLS', () => {
  it('each tenant admin sees, changes, rotates and deletes only its own', async () => {
    const a = await acme.createEndpoint(endpoint('https://acme.example/hook', { tables: [posts()] }));
    const g = await globex.createEndpoint(endpoint('https://globex.example/hook'));
    expect(a.endpoint).toMatchObject({
      tenantId: ACME,
      owner: { role: 'authenticated', subject: USERS.alice, tenantId: ACME },
      enabled: true,
    });
    expect(a.secret).toMatch(/^whsec_/);
    expect(g.endpoint?.owner).toEqual({ role: 'authenticated', subject: USERS.bob, tenantId: GLOBEX });
    const gid = g.endpoint?.id ?? '';

    // The owner claims keep who, not the token's lifetime.
    const { rows } = await stack.pool.query(
      'select owner_claims, start_position from sluice_webhooks.endpoints where id = $1',
      [a.endpoint?.id],
    );
    expect(rows[0].owner_claims).toEqual({
      sub: USERS.alice,
      role: 'authenticated',
      tenant_id: ACME,
      tenant_role: 'admin',
    });
    expect(rows[0].start_position).toMatch(/^\d+:\d+$/);

    expect((await acme.listEndpoints({})).endpoints.map((e) => e.url)).toEqual(['https://acme.example/hook']);
    expect((await rejection(acme.getEndpoint({ id: gid }))).code).toBe('NOT_FOUND');
    expect((await rejection(acme.updateEndpoint({ id: gid, url: 'https://evil.example/' }))).code).toBe(
      'NOT_FOUND',
    );
    expect((await rejection(acme.rotateEndpointSecret({ id: gid }))).code).toBe('NOT_FOUND');
    expect((await rejection(acme.sendTestMessage({ endpointId: gid }))).code).toBe('NOT_FOUND');
    expect((await rejection(acme.deleteEndpoint({ id: gid }))).code).toBe('NOT_FOUND');
    expect((await globex.getEndpoint({ id: gid })).endpoint?.url).toBe('https://globex.example/hook');

    // Plain users and anon: nothing to see, nothing to create.
    expect((await alice.listEndpoints({})).endpoints).toEqual([]);
    expect((await rejection(alice.getEndpoint({ id: gid }))).code).toBe('NOT_FOUND');
    expect((await rejection(alice.createEndpoint(endpoint('https://alice.example/')))).code).toBe(
      'PERMISSION_DENIED',
    );
    expect((await rejection(anon.createEndpoint(endpoint('https://anon.example/')))).code).toBe(
      'PERMISSION_DENIED',
    );
    expect((await rejection(anon.listEndpoints({}))).code).toBe('PERMISSION_DENIED');

    // A tenant admin cannot name an owner, nor another tenant.
    expect(
      await rejection(
        acme.createEndpoint({
          ...endpoint('https://acme.example/2'),
          owner: { role: 'service_role', subject: '', tenantId: '' },
        }),
      ),
    ).toEqual({ code: 'PERMISSION_DENIED', fields: ['owner'] });
    expect(
      (await rejection(acme.createEndpoint(endpoint('https://acme.example/3', { tenantId: GLOBEX })))).code,
    ).toBe('PERMISSION_DENIED');
    const { rows: count } = await stack.pool.query(
      'select count(*)::int as n from sluice_webhooks.endpoints',
    );
    expect(count).toEqual([{ n: 2 }]);
  });

  it('service_role creates service-level endpoints or names a tenant user as owner', async () => {
    const own = await service.createEndpoint(endpoint('https://ops.example/hook'));
    expect(own.endpoint).toMatchObject({
      tenantId: '',
      owner: { role: 'service_role', subject: '', tenantId: '' },
    });
    const forCarol = await service.createEndpoint({
      ...endpoint('https://acme.example/carol'),
      owner: { role: '', subject: USERS.carol, tenantId: ACME },
    });
    expect(forCarol.endpoint).toMatchObject({
      tenantId: ACME,
      owner: { role: 'authenticated', subject: USERS.carol, tenantId: ACME },
    });
    expect((await acme.getEndpoint({ id: forCarol.endpoint?.id ?? '' })).endpoint?.url).toBe(
      'https://acme.example/carol',
    );
    expect(
      await rejection(
        service.createEndpoint({
          ...endpoint('https://acme.example/x'),
          owner: { role: 'service_role', subject: 'x', tenantId: ACME },
        }),
      ),
    ).toEqual({ code: 'INVALID_ARGUMENT', fields: ['owner.role'] });
    expect(
      await rejection(service.createEndpoint(endpoint('https://acme.example/y', { tenantId: ACME }))),
    ).toEqual({
      code: 'INVALID_ARGUMENT',
      fields: ['owner'],
    });
  });

  it('updates only the fields present; disabling records "manual", enabling clears it', async () => {
    const created = await acme.createEndpoint(
      endpoint('https://acme.example/u', { description: 'd', headers: { 'x-team': 'a' } }),
    );
    const id = created.endpoint?.id ?? '';
    const off = await acme.updateEndpoint({
      id,
      enabled: false,
      ordering: 0,
      headers: {},
      setHeaders: false,
    } as never);
    expect(off.endpoint).toMatchObject({
      enabled: false,
      disabledReason: 'manual',
      description: 'd',
      headers: { 'x-team': 'a' },
      url: 'https://acme.example/u',
    });
    const on = await acme.updateEndpoint({
      id,
      enabled: true,
      setHeaders: true,
      headers: {},
      setEventTypes: true,
      eventTypes: ['invoice.paid'],
      ordering: webhooks.Ordering.ORDERING_KEY,
    } as never);
    expect(on.endpoint).toMatchObject({
      enabled: true,
      disabledReason: '',
      headers: {},
      eventTypes: ['invoice.paid'],
      ordering: webhooks.Ordering.ORDERING_KEY,
      description: 'd',
    });
  });
});

describe('endpoint secrets', () => {
  it('are shown once and rotation keeps the old one for the grace period', async () => {
    const created = await acme.createEndpoint(endpoint('https://acme.example/secret'));
    const id = created.endpoint?.id ?? '';
    const shown = JSON.stringify([
      webhooks.GetEndpointResponse.toJSON(await acme.getEndpoint({ id })),
      webhooks.ListEndpointsResponse.toJSON(await acme.listEndpoints({})),
    ]);
    expect(shown).not.toContain(created.secret.slice(6));
    const rotated = await acme.rotateEndpointSecret({ id, graceSeconds: 600 });
    expect(rotated.secret).toMatch(/^whsec_/);
    const until = Number(rotated.previousValidUntil?.seconds) * 1000;
    expect(Math.abs(until - (Date.now() + 600_000))).toBeLessThan(10_000);
    const { rows } = await stack.pool.query<{ secret: string; expires_at: Date | null }>(
      'select secret, expires_at from sluice_webhooks.secrets where endpoint_id = $1 order by id',
      [id],
    );
    expect(rows.map((r) => r.secret)).toEqual([created.secret, rotated.secret]);
    expect(Math.abs((rows[0]?.expires_at?.getTime() ?? 0) - until)).toBeLessThan(1000);
    expect(rows[1]?.expires_at).toBeNull();

    // A given secret must be a Standard Webhooks key.
    const key = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;
    expect((await acme.createEndpoint({ ...endpoint('https://acme.example/k'), secret: key })).secret).toBe(
      key,
    );
    expect(
      await rejection(acme.createEndpoint({ ...endpoint('https://acme.example/k2'), secret: 'whsec_short' })),
    ).toEqual({
      code: 'INVALID_ARGUMENT',
      fields: ['secret'],
    });
  });
});

describe('endpoint validation', () => {
  it('names the offending field', async () => {
    const cases: [webhooks.CreateEndpointRequest, string, string?][] = [
      [endpoint(''), 'endpoint.url'],
      [endpoint('ftp://acme.example/'), 'endpoint.url'],
      [endpoint('not a url'), 'endpoint.url'],
      [endpoint('https://user:pw@acme.example/'), 'endpoint.url'],
      [endpoint(`https://acme.example/${'a'.repeat(2048)}`), 'endpoint.url'],
      [endpoint('https://acme.example/', { headers: { 'X-Upper': 'v' } }), 'endpoint.headers["X-Upper"]'],
      [
        endpoint('https://acme.example/', { headers: { 'webhook-id': 'v' } }),
        'endpoint.headers["webhook-id"]',
      ],
      [
        endpoint('https://acme.example/', { headers: { 'content-type': 'v' } }),
        'endpoint.headers["content-type"]',
      ],
      [endpoint('https://acme.example/', { headers: { host: 'v' } }), 'endpoint.headers["host"]'],
      [
        endpoint('https://acme.example/', { headers: { 'content-length': '1' } }),
        'endpoint.headers["content-length"]',
      ],
      [endpoint('https://acme.example/', { headers: { 'x-a': 'line\r\nbreak' } }), 'endpoint.headers["x-a"]'],
      [endpoint('https://acme.example/', { eventTypes: ['ok', 'bad type'] }), 'endpoint.event_types[1]'],
      [endpoint('https://acme.example/', { ordering: 9 as webhooks.Ordering }), 'endpoint.ordering'],
      [
        endpoint('https://acme.example/', { tables: [{ ...posts(), table: 'nope' }] }),
        'endpoint.tables[0].table',
      ],
      [
        endpoint('https://acme.example/', { tables: [{ ...posts(), table: '' }] }),
        'endpoint.tables[0].table',
      ],
      [endpoint('https://acme.example/', { tables: [posts(), posts()] }), 'endpoint.tables[1].table'],
      [
        endpoint('https://acme.example/', {
          tables: [{ ...posts(), operations: [7 as webhooks.Operation] }],
        }),
        'endpoint.tables[0].operations[0]',
      ],
      [
        endpoint('https://acme.example/', {
          tables: [
            posts({
              kind: {
                $case: 'condition',
                value: {
                  column: 'no_such_column',
                  op: Operator.OPERATOR_EQ,
                  value: undefined,
                  values: [],
                  textSearchConfig: '',
                },
              },
            }),
          ],
        }),
        'endpoint.tables[0].filter.condition.column',
      ],
      [
        // What event filters do not take (the fan-out matches rows as the events service does).
        endpoint('https://acme.example/', {
          tables: [
            posts({
              kind: {
                $case: 'condition',
                value: {
                  column: 'title',
                  op: Operator.OPERATOR_LIKE,
                  value: { kind: { $case: 'stringValue', value: 'a%' } },
                  values: [],
                  textSearchConfig: '',
                },
              },
            }),
          ],
        }),
        'endpoint.tables[0].filter.condition.op',
      ],
    ];
    for (const [req, field] of cases) {
      expect(await rejection(acme.createEndpoint(req)), field).toEqual({
        code: 'INVALID_ARGUMENT',
        fields: [field],
      });
    }
    expect(await rejection(acme.getEndpoint({ id: '123' }))).toEqual({
      code: 'INVALID_ARGUMENT',
      fields: ['id'],
    });
    expect(await rejection(acme.updateEndpoint({ id: '', setHeaders: false } as never))).toEqual({
      code: 'INVALID_ARGUMENT',
      fields: ['id'],
    });
  });

  it('takes only captured tables, with a filter that compiles', async () => {
    await stack.pool.query("select sluice.disable_changes('public.type_samples')");
    try {
      const r = await rejection(
        acme.createEndpoint(
          endpoint('https://acme.example/', { tables: [{ ...posts(), table: 'type_samples' }] }),
        ),
      );
      expect(r).toEqual({ code: 'FAILED_PRECONDITION', fields: ['endpoint.tables[0].table'] });
    } finally {
      await stack.pool.query("select sluice.enable_changes('public.type_samples')");
    }
    const ok = await acme.createEndpoint(
      endpoint('https://acme.example/filtered', {
        tables: [
          posts({
            kind: {
              $case: 'condition',
              value: {
                column: 'status',
                op: Operator.OPERATOR_EQ,
                value: { kind: { $case: 'stringValue', value: 'published' } },
                values: [],
                textSearchConfig: '',
              },
            },
          }),
        ],
      }),
    );
    expect(ok.endpoint?.tables[0]).toMatchObject({
      schema: 'public',
      table: 'posts',
      operations: [webhooks.Operation.OPERATION_INSERT],
      filter: { kind: { $case: 'condition', value: { column: 'status' } } },
    });
    const { rows } = await stack.pool.query('select tables from sluice_webhooks.endpoints where id = $1', [
      ok.endpoint?.id,
    ]);
    expect(rows[0].tables).toEqual([
      {
        schema: 'public',
        table: 'posts',
        operations: ['INSERT'],
        filter: { condition: { column: 'status', op: 'OPERATOR_EQ', value: { stringValue: 'published' } } },
      },
    ]);
  });

  it('refuses http when WEBHOOKS_HTTPS_ONLY is on', async () => {
    const strict = await stack.addInstance({ WEBHOOKS_HTTPS_ONLY: 'true' });
    try {
      const client = strict.client(await stack.token('service'));
      expect(await rejection(client.createEndpoint(endpoint('http://plain.example/')))).toEqual({
        code: 'INVALID_ARGUMENT',
        fields: ['endpoint.url'],
      });
      expect((await client.createEndpoint(endpoint('https://tls.example/'))).endpoint?.url).toBe(
        'https://tls.example/',
      );
    } finally {
      await strict.close();
    }
  });
});

describe('SendTestMessage', () => {
  it('queues a sluice.test message to that endpoint only', async () => {
    const target = await acme.createEndpoint(endpoint('https://acme.example/test-target'));
    const id = target.endpoint?.id ?? '';
    const sent = await acme.sendTestMessage({ endpointId: id });
    expect(sent.message).toMatchObject({ eventType: 'sluice.test', tenantId: ACME });
    expect(sent.message?.id).toMatch(/^msg_[0-9a-f]{32}$/);
    expect(sent.message?.deliveries).toEqual([
      expect.objectContaining({ endpointId: id, status: webhooks.DeliveryStatus.DELIVERY_STATUS_PENDING }),
    ]);
    const body = JSON.parse(sent.message?.payloadJson ?? '{}');
    expect(body).toMatchObject({ type: 'sluice.test', data: { endpoint_id: id } });
    const { rows } = await stack.pool.query(
      `select d.endpoint_id from sluice_webhooks.deliveries d join sluice_webhooks.messages m on m.id = d.message_id
        where m.event_type = 'sluice.test'`,
    );
    // Other endpoints of the tenant that take '*' get nothing.
    expect(rows).toEqual([{ endpoint_id: id }]);
  });
});
