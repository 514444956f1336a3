import type { webhooks } from '@sluice/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACME, startWebhooksStack, type WebhooksClient, type WebhooksStack } from './helpers';

// Outside review: pages of large rows. gRPC refuses a message over 4 MiB, and a page of 100
// messages of 1 MiB each is 100 MiB: such a list must come in smaller pages, not fail.

let stack: WebhooksStack;
let acme: WebhooksClient;

beforeAll(async () => {
  stack = await startWebhooksStack();
  acme = stack.client(await stack.token({ admin: ACME }));
}, 120_000);

afterAll(async () => {
  await stack?.close();
});

describe('pages of large rows', () => {
  it('ListMessages pages messages of almost 1 MiB each within the message size', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) {
      const published = await acme.publish({
        eventType: 'big.payload',
        payloadJson: JSON.stringify({ i, s: 'x'.repeat(1000 * 1000) }),
        idempotencyKey: '',
        tenantId: '',
        orderingKey: '',
      });
      ids.push(published.message?.id ?? '');
    }
    const seen: string[] = [];
    let pageToken = '';
    for (let pages = 0; pages < 20; pages++) {
      const page = await acme.listMessages({ endpointId: '', eventType: 'big.payload', limit: 0, pageToken });
      expect(page.messages.length).toBeGreaterThan(0);
      seen.push(...page.messages.map((m) => m.id));
      pageToken = page.nextPageToken;
      if (!pageToken) break;
    }
    expect(seen).toEqual([...ids].reverse());
  }, 120_000);

  it('ListAttempts pages attempts with 20 KB response bodies within the message size', async () => {
    const { rows } = await stack.pool.query<{ id: string }>(
      `with e as (
         insert into sluice_webhooks.endpoints (tenant_id, url, owner_role, owner_claims)
         values ($1::uuid, 'http://127.0.0.1:9/', 'authenticated', jsonb_build_object('tenant_id', $1::text)) returning id
       ), m as (
         insert into sluice_webhooks.messages (tenant_id, event_type, payload) values ($1::uuid, 'a.b', '{}') returning id
       ), d as (
         insert into sluice_webhooks.deliveries (message_id, endpoint_id, tenant_id, status)
         select m.id, e.id, $1::uuid, 'failed' from m, e returning id, message_id, endpoint_id
       )
       insert into sluice_webhooks.attempts (delivery_id, message_id, endpoint_id, tenant_id, attempt, started_at, duration_ms, status_code, outcome, response_body)
       select d.id, d.message_id, d.endpoint_id, $1::uuid, n, now(), 1, 500, 'http_error', repeat('r', 20 * 1024)
         from d, generate_series(1, 400) n
       returning id::text`,
      [ACME],
    );
    const seen: string[] = [];
    let pageToken = '';
    for (let pages = 0; pages < 50; pages++) {
      const page = await acme.listAttempts({ messageId: '', endpointId: '', limit: 1000, pageToken });
      expect(page.attempts.length).toBeGreaterThan(0);
      seen.push(...page.attempts.map((a) => a.id));
      pageToken = page.nextPageToken;
      if (!pageToken) break;
    }
    expect(seen).toEqual(rows.map((r) => r.id));
  }, 120_000);
});

describe('pages of large endpoints', () => {
  it('ListEndpoints pages endpoints of 50 headers of 4 KB within the message size', async () => {
    const headers = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`x-h${i}`, 'v'.repeat(4096)]));
    const ids: string[] = [];
    for (let i = 0; i < 25; i++) {
      const created = await acme.createEndpoint({
        endpoint: { url: `http://127.0.0.1:9/${i}`, headers, eventTypes: ['*'] },
      } as unknown as webhooks.CreateEndpointRequest);
      ids.push(created.endpoint?.id ?? '');
    }
    const seen: string[] = [];
    let pageToken = '';
    for (let pages = 0; pages < 30; pages++) {
      const page = await acme.listEndpoints({ limit: 1000, pageToken });
      seen.push(...page.endpoints.map((e) => e.id));
      pageToken = page.nextPageToken;
      if (!pageToken) break;
    }
    expect(seen).toEqual(expect.arrayContaining(ids));
    expect(seen).toHaveLength(new Set(seen).size);
  }, 120_000);
});
