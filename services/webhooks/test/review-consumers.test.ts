import type { webhooks } from '@sluice/proto';
import { type ClientError, Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACME, GLOBEX, startWebhooksStack, type WebhooksClient, type WebhooksStack } from './helpers';

// Outside review of the consumers: what one claim reads into memory, and acknowledgements aimed
// at events the consumer does not hold.

let stack: WebhooksStack;
let acme: WebhooksClient;
let sourceId: string;

beforeAll(async () => {
  stack = await startWebhooksStack({ WEBHOOKS_HEARTBEAT_MS: '300' });
  acme = stack.client(await stack.token({ admin: ACME }));
  const { rows } = await stack.pool.query<{ id: string }>(
    `insert into sluice_webhooks.sources (name, kind, tenant_id) values ('acme-big', 'standard-webhooks', $1) returning id`,
    [ACME],
  );
  sourceId = rows[0]?.id ?? '';
}, 120_000);

afterAll(async () => {
  await stack?.close();
});

/** Events of `bytes` each, stored as the ingress would. */
async function insertEvents(n: number, bytes: number): Promise<string[]> {
  const { rows } = await stack.pool.query<{ id: string }>(
    `insert into sluice_webhooks.inbox (source_id, tenant_id, external_id, body)
     select $1, $2, 'big-' || gen_random_uuid(), convert_to(repeat('x', $4), 'UTF8') from generate_series(1, $3)
     returning id::text`,
    [sourceId, ACME, n, bytes],
  );
  return rows.map((r) => r.id);
}

/** Reads a stream until `n` events came (or it fails), then closes it. */
async function receive(req: Partial<webhooks.ConsumeRequest>, n: number): Promise<webhooks.InboundEvent[]> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 60_000);
  const events: webhooks.InboundEvent[] = [];
  try {
    for await (const m of acme.consume(
      { consumer: '', sources: [], maxInFlight: 0, ackTimeoutSeconds: 0, ...req },
      { signal: controller.signal },
    )) {
      if (m.message?.$case === 'event') events.push(m.message.value);
      if (events.length >= n) break;
      if (n === 0) break;
    }
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
  return events;
}

describe('a claim', () => {
  it('reads a bounded number of body bytes at once, however large max_in_flight is', async () => {
    await receive({ consumer: 'big-reader' }, 0); // created: it takes events from now on
    const ids = await insertEvents(48, 1024 * 1024);
    const events = await receive({ consumer: 'big-reader', maxInFlight: 1000, ackTimeoutSeconds: 600 }, 48);
    expect(events.map((e) => e.id)).toEqual(ids);
    expect(events.every((e) => e.body.length === 1024 * 1024)).toBe(true);
    // Events leased by one claim statement share its now(): 48 MiB went in several claims.
    const { rows } = await stack.pool.query<{ n: number }>(
      `select count(*)::int as n from sluice_webhooks.consumer_events ce
         join sluice_webhooks.consumers c on c.id = ce.consumer_id
        where c.name = 'big-reader' group by ce.lease_until order by min(ce.event_id)`,
    );
    expect(rows.length).toBeGreaterThanOrEqual(3);
    for (const r of rows) expect(r.n).toBeLessThanOrEqual(17);
  }, 120_000);

  it('takes events of several MiB one claim after another', async () => {
    await receive({ consumer: 'huge-reader' }, 0);
    // 3 MiB each, not JSON (one copy in the message, under gRPC's 4 MiB).
    const ids = await insertEvents(6, 3 * 1024 * 1024);
    const events = await receive({ consumer: 'huge-reader', maxInFlight: 10 }, 6);
    expect(events.map((e) => e.id)).toEqual(ids);
  }, 120_000);
});

describe('Ack', () => {
  it("of another consumer's events, or of 10,000 ids, acknowledges only what this consumer holds", async () => {
    await receive({ consumer: 'ack-a' }, 0);
    const [id] = await insertEvents(1, 10);
    // ack-b is created after the event: it is not one of ack-b's.
    await receive({ consumer: 'ack-b' }, 0);
    const [held] = await receive({ consumer: 'ack-a', ackTimeoutSeconds: 600 }, 1);
    expect(held?.id).toBe(id);
    // ack-b never held it: nothing to acknowledge, and ack-a still holds it.
    expect((await acme.ack({ consumer: 'ack-b', eventIds: [id as string] })).acked).toBe(0);
    const many = Array.from({ length: 10_000 }, (_, i) => String(i + 1));
    expect((await acme.ack({ consumer: 'ack-b', eventIds: many })).acked).toBe(0);
    const tooMany = await acme.ack({ consumer: 'ack-b', eventIds: [...many, '10001'] }).then(
      () => 'OK',
      (e: unknown) => Status[(e as ClientError).code],
    );
    expect(tooMany).toBe('INVALID_ARGUMENT');
    const { rows } = await stack.pool.query(
      `select c.name, ce.acked_at is not null as acked from sluice_webhooks.consumer_events ce
         join sluice_webhooks.consumers c on c.id = ce.consumer_id where ce.event_id = $1 order by c.name`,
      [id],
    );
    expect(rows).toEqual([{ name: 'ack-a', acked: false }]);
    expect((await acme.ack({ consumer: 'ack-a', eventIds: [id as string] })).acked).toBe(1);
  }, 120_000);
});

describe("another tenant's volume", () => {
  it("does not make a tenant consumer's claims scan it under the policy's per-row check", async () => {
    const { rows } = await stack.pool.query<{ id: string }>(
      `insert into sluice_webhooks.sources (name, kind, tenant_id) values ('globex-busy', 'standard-webhooks', $1) returning id`,
      [GLOBEX],
    );
    await receive({ consumer: 'acme-quiet' }, 0);
    await stack.pool.query(
      `insert into sluice_webhooks.inbox (source_id, tenant_id, external_id, body)
       select $1, $2, 'busy-' || n, '\\x00' from generate_series(1, 300000) n`,
      [rows[0]?.id, GLOBEX],
    );
    await stack.pool.query('analyze sluice_webhooks.inbox');
    const [id] = await insertEvents(1, 10);
    // Under the policy alone, one claim over 300,000 GLOBEX events took seconds here.
    const started = Date.now();
    const events = await receive({ consumer: 'acme-quiet' }, 1);
    expect(events.map((e) => e.id)).toEqual([id]);
    expect(Date.now() - started).toBeLessThan(1_500);
  }, 120_000);
});
