import { setTimeout as delay } from 'node:timers/promises';
import { metrics } from '@sluice/observability';
import { webhooks } from '@sluice/proto';
import { ClientError, Status } from 'nice-grpc';
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
const sourceIds: Record<string, string> = {};

beforeAll(async () => {
  stack = await startWebhooksStack({
    WEBHOOKS_CONSUMER_POLL_INTERVAL_MS: '200',
    WEBHOOKS_HEARTBEAT_MS: '500',
  });
  service = stack.client(await stack.token('service'));
  acme = stack.client(await stack.token({ admin: ACME }));
  globex = stack.client(await stack.token({ admin: GLOBEX }));
  alice = stack.client(await stack.token('alice'));
  const kinds = {
    std: webhooks.SourceKind.SOURCE_KIND_STANDARD_WEBHOOKS,
    db: webhooks.SourceKind.SOURCE_KIND_SUPABASE_DATABASE,
  };
  for (const [name, tenantId, kind] of [
    ['acme-a', ACME, kinds.std],
    ['acme-b', ACME, kinds.std],
    ['acme-db', ACME, kinds.db],
    ['globex-a', GLOBEX, kinds.std],
  ] as const) {
    const created = await service.createSource({
      source: { name, tenantId, kind } as webhooks.Source,
      secret: '',
    });
    sourceIds[name] = created.source?.id ?? '';
  }
}, 120_000);

afterAll(async () => {
  await stack?.close();
});

/** A counter of the process's registry (the servers run in the test process). */
async function counter(name: string): Promise<number> {
  const metric = metrics.getSingleMetric(name);
  const values = (await metric?.get())?.values ?? [];
  return values.reduce((sum, v) => sum + v.value, 0);
}

let seq = 0;
/** Stores `n` inbox events of a source as the ingress would (superuser); returns their ids. */
async function insertEvents(
  source: string,
  n: number,
  body = (i: number) => `{"n":${i}}`,
): Promise<string[]> {
  const tenant = source.startsWith('acme') ? ACME : GLOBEX;
  const bodies = Array.from({ length: n }, (_, i) => body(i));
  const externals = bodies.map(() => `evt-${++seq}`);
  const { rows } = await stack.pool.query<{ id: string }>(
    `insert into sluice_webhooks.inbox (source_id, tenant_id, external_id, event_type, headers, body, traceparent)
     select $1, $2, e, 'thing.happened', '{"webhook-id": "x"}', convert_to(b, 'UTF8'), '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'
       from unnest($3::text[], $4::text[]) as t(e, b)
     returning id::text`,
    [sourceIds[source], tenant, externals, bodies],
  );
  return rows.map((r) => r.id);
}

async function until<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 30_000,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await delay(50);
  }
}

async function consumerExists(name: string): Promise<void> {
  await until(`consumer ${name}`, async () => {
    const { rows } = await stack.pool.query('select 1 from sluice_webhooks.consumers where name = $1', [
      name,
    ]);
    return rows.length > 0 ? true : undefined;
  });
}

/** An open Consume stream collecting its events (acking each when `ack`), until stopped. */
interface Stream {
  readonly events: webhooks.InboundEvent[];
  heartbeats: number;
  /** Why the stream ended (undefined while open or when stopped by the test). */
  error: unknown;
  readonly done: Promise<void>;
  stop(): Promise<void>;
}

function open(client: WebhooksClient, req: Partial<webhooks.ConsumeRequest>, ack = false): Stream {
  const controller = new AbortController();
  const stream: Stream = {
    events: [],
    heartbeats: 0,
    error: undefined,
    done: Promise.resolve(),
    async stop() {
      controller.abort();
      await this.done;
    },
  };
  (stream as { done: Promise<void> }).done = (async () => {
    try {
      for await (const m of client.consume(
        { consumer: '', sources: [], maxInFlight: 0, ackTimeoutSeconds: 0, ...req },
        { signal: controller.signal },
      )) {
        if (m.message?.$case === 'heartbeat') stream.heartbeats++;
        if (m.message?.$case === 'event') {
          stream.events.push(m.message.value);
          if (ack) await client.ack({ consumer: req.consumer ?? '', eventIds: [m.message.value.id] });
        }
      }
    } catch (error) {
      if (!controller.signal.aborted) stream.error = error;
    }
  })();
  return stream;
}

describe('Consume and Ack', () => {
  it('sends typed events; what is not acknowledged comes back after the lease, what is acknowledged never', async () => {
    const first = open(acme, { consumer: 'resume', ackTimeoutSeconds: 1 });
    await consumerExists('resume');
    const ids = await insertEvents('acme-a', 5);
    await until('5 events', () => (first.events.length >= 5 ? true : undefined));
    await first.stop();
    expect(first.events.map((e) => e.id)).toEqual(ids);
    const e = first.events[0] as webhooks.InboundEvent;
    expect(e).toMatchObject({
      source: 'acme-a',
      kind: webhooks.SourceKind.SOURCE_KIND_STANDARD_WEBHOOKS,
      eventType: 'thing.happened',
      headers: { 'webhook-id': 'x' },
      json: '{"n":0}',
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      deliveryAttempt: 1,
      tenantId: ACME,
    });
    expect(e.externalId).toMatch(/^evt-/);
    expect(Buffer.from(e.body).toString()).toBe('{"n":0}');
    expect(e.receivedAt?.seconds).toBeGreaterThan(0n);

    // Reconnected: the same events again once their lease ended; three are acknowledged.
    const second = open(acme, { consumer: 'resume', ackTimeoutSeconds: 1 });
    await until('redelivery', () => (second.events.length >= 5 ? true : undefined));
    expect(second.events.map((x) => x.id)).toEqual(ids);
    expect(second.events.map((x) => x.deliveryAttempt)).toEqual([2, 2, 2, 2, 2]);
    const ackedBefore = await counter('webhooks_consumer_acked_total');
    const acked = await acme.ack({ consumer: 'resume', eventIds: ids.slice(0, 3) });
    expect(acked.acked).toBe(3);
    expect((await counter('webhooks_consumer_acked_total')) - ackedBefore).toBe(3);
    expect(await counter('webhooks_consumer_events_sent_total')).toBeGreaterThanOrEqual(10);
    expect((await acme.ack({ consumer: 'resume', eventIds: ids.slice(0, 3) })).acked).toBe(0);
    await second.stop();

    const third = open(acme, { consumer: 'resume', ackTimeoutSeconds: 1 });
    await until('the unacknowledged two', () => (third.events.length >= 2 ? true : undefined));
    await delay(2500); // past another lease: still only those two come back
    await third.stop();
    const again = new Set(third.events.map((x) => x.id));
    expect([...again].sort()).toEqual(ids.slice(3).sort());
    expect(third.heartbeats).toBeGreaterThan(0);
  });

  it('two streams of one consumer, on two instances, never hold the same event', async () => {
    const second = await stack.addInstance();
    const onSecond = second.client(await stack.token({ admin: ACME }));
    const a = open(acme, { consumer: 'pair', maxInFlight: 20 }, true);
    const b = open(onSecond, { consumer: 'pair', maxInFlight: 20 }, true);
    await consumerExists('pair');
    await delay(300); // both streams are in their loops
    const ids = await insertEvents('acme-b', 200);
    await until('all 200', () => (a.events.length + b.events.length >= 200 ? true : undefined), 60_000);
    await delay(500);
    await Promise.all([a.stop(), b.stop()]);
    await second.close();
    const fromA = a.events.map((e) => e.id);
    const fromB = new Set(b.events.map((e) => e.id));
    expect(new Set([...fromA, ...fromB])).toEqual(new Set(ids));
    expect(fromA.filter((id) => fromB.has(id))).toEqual([]);
    expect(fromA.length + fromB.size).toBe(200);
    // Both took part (the claims interleave), and every event was acknowledged once.
    expect(fromA.length).toBeGreaterThan(0);
    expect(fromB.size).toBeGreaterThan(0);
    const { rows } = await stack.pool.query(
      `select count(*)::int as n from sluice_webhooks.consumer_events ce join sluice_webhooks.consumers c on c.id = ce.consumer_id
        where c.name = 'pair' and ce.acked_at is not null and ce.deliveries = 1`,
    );
    expect(rows).toEqual([{ n: 200 }]);
  });

  it("a tenant admin receives only its tenant's events; service_role all; sources narrow it", async () => {
    const acmeAll = open(acme, { consumer: 'tenancy' }, true);
    const globexAll = open(globex, { consumer: 'tenancy' }, true);
    const serviceAll = open(service, { consumer: 'tenancy' }, true);
    const onlyB = open(acme, { consumer: 'only-b', sources: ['acme-b'] }, true);
    await Promise.all([consumerExists('tenancy'), consumerExists('only-b')]);
    await until('three tenancy consumers', async () => {
      const { rows } = await stack.pool.query(
        "select count(*)::int as n from sluice_webhooks.consumers where name = 'tenancy'",
      );
      return rows[0].n === 3 ? true : undefined;
    });
    const acmeA = await insertEvents('acme-a', 3);
    const acmeB = await insertEvents('acme-b', 2);
    const globexA = await insertEvents('globex-a', 4);
    await until('service sees all', () => (serviceAll.events.length >= 9 ? true : undefined));
    await until('acme', () => (acmeAll.events.length >= 5 ? true : undefined));
    await until('globex', () => (globexAll.events.length >= 4 ? true : undefined));
    await until('only-b', () => (onlyB.events.length >= 2 ? true : undefined));
    await delay(500);
    await Promise.all([acmeAll.stop(), globexAll.stop(), serviceAll.stop(), onlyB.stop()]);
    expect(acmeAll.events.map((e) => e.id)).toEqual([...acmeA, ...acmeB]);
    expect(globexAll.events.map((e) => e.id)).toEqual(globexA);
    expect(globexAll.events.every((e) => e.tenantId === GLOBEX)).toBe(true);
    expect(serviceAll.events.map((e) => e.id).sort()).toEqual([...acmeA, ...acmeB, ...globexA].sort());
    expect(onlyB.events.map((e) => e.id)).toEqual(acmeB);

    // Acknowledging another tenant's event does nothing; a plain user may not consume.
    expect((await globex.ack({ consumer: 'tenancy', eventIds: acmeA })).acked).toBe(0);
    const denied = open(alice, { consumer: 'tenancy' });
    await denied.done;
    expect(denied.error).toBeInstanceOf(ClientError);
    expect(Status[(denied.error as ClientError).code]).toBe('PERMISSION_DENIED');
  });

  it("delivers the operational events of a tenant's endpoints to its admin", async () => {
    const stream = open(acme, { consumer: 'ops', sources: ['sluice-operational'] }, true);
    await consumerExists('ops');
    const { rows } = await stack.pool.query<{ id: string }>(
      `insert into sluice_webhooks.inbox (source_id, tenant_id, external_id, event_type, body)
       select s.id, t, 'failing:' || t, 'endpoint.failing', convert_to('{"type":"endpoint.failing"}', 'UTF8')
         from sluice_webhooks.sources s, unnest($1::uuid[]) as t where s.name = 'sluice-operational'
       returning id::text`,
      [[ACME, GLOBEX]],
    );
    await until('the operational event', () => (stream.events.length >= 1 ? true : undefined));
    await delay(500);
    await stream.stop();
    expect(stream.events).toHaveLength(1);
    expect(stream.events[0]).toMatchObject({
      id: rows[0]?.id,
      source: 'sluice-operational',
      kind: webhooks.SourceKind.SOURCE_KIND_OPERATIONAL,
      eventType: 'endpoint.failing',
      tenantId: ACME,
    });
  });

  it('types supabase-database events as changes of catalog tables', async () => {
    const stream = open(acme, { consumer: 'typed' }, true);
    await consumerExists('typed');
    const body = JSON.stringify({
      type: 'INSERT',
      table: 'projects',
      schema: 'public',
      record: { id: '8d3c0f6e-3b0a-4b7e-9a53-0c1f3c1c2a11', tenant_id: ACME, name: 'Apollo' },
      old_record: null,
    });
    const [id] = await insertEvents('acme-db', 1, () => body);
    await until('the change', () => (stream.events.length >= 1 ? true : undefined));
    await stream.stop();
    const event = stream.events[0] as webhooks.InboundEvent;
    expect(event.id).toBe(id);
    expect(event.kind).toBe(webhooks.SourceKind.SOURCE_KIND_SUPABASE_DATABASE);
    expect(event.json).toBe(body);
    expect(event.change).toMatchObject({
      operation: webhooks.Operation.OPERATION_INSERT,
      schema: 'public',
      table: 'projects',
    });
    const names = event.change?.columns.map((c) => c.name) ?? [];
    expect(names).toEqual(expect.arrayContaining(['id', 'tenant_id', 'name']));
    const nameValue = event.change?.record?.values[names.indexOf('name')];
    expect(nameValue?.kind).toEqual({ $case: 'stringValue', value: 'Apollo' });
  });

  it('moves the floor over acknowledged events older than the margin and forgets their leases', async () => {
    const stream = open(acme, { consumer: 'floor' }, true);
    await consumerExists('floor');
    const ids = await insertEvents('acme-a', 4);
    await until('4 events', () => (stream.events.length >= 4 ? true : undefined));
    await stream.stop();
    // As if received ten minutes ago (beyond the safety margin).
    await stack.pool.query(
      "update sluice_webhooks.inbox set received_at = now() - interval '10 minutes' where id = any($1::bigint[])",
      [ids],
    );
    const next = open(acme, { consumer: 'floor' }, true);
    await until('the floor', async () => {
      const { rows } = await stack.pool.query(
        "select floor_id::text from sluice_webhooks.consumers where name = 'floor'",
      );
      return rows[0].floor_id === ids[3] ? true : undefined;
    });
    const { rows } = await stack.pool.query(
      `select count(*)::int as n from sluice_webhooks.consumer_events ce join sluice_webhooks.consumers c on c.id = ce.consumer_id
        where c.name = 'floor'`,
    );
    expect(rows).toEqual([{ n: 0 }]);
    // New events still arrive; the old ones never again.
    const [later] = await insertEvents('acme-a', 1);
    await until('a new event', () => (next.events.length >= 1 ? true : undefined));
    await next.stop();
    expect(next.events.map((e) => e.id)).toEqual([later]);
  });

  it('wakes on new inbox events (LISTEN) and on acknowledgements, not only by polling', async () => {
    // Polling and heartbeats a minute apart: only the wake-ups can deliver within the test.
    const slow = await stack.addInstance({
      WEBHOOKS_CONSUMER_POLL_INTERVAL_MS: '60000',
      WEBHOOKS_HEARTBEAT_MS: '60000',
    });
    try {
      const client = slow.client(await stack.token({ admin: ACME }));
      const stream = open(client, { consumer: 'woken', maxInFlight: 1 });
      await consumerExists('woken');
      await delay(300); // the stream waits
      const started = Date.now();
      const ids = await insertEvents('acme-a', 2);
      await until('the first event', () => (stream.events.length >= 1 ? true : undefined), 10_000);
      // One in flight at most: the second comes when the first is acknowledged.
      await delay(300);
      expect(stream.events).toHaveLength(1);
      expect((await client.ack({ consumer: 'woken', eventIds: [ids[0] as string] })).acked).toBe(1);
      await until('the second event', () => (stream.events.length >= 2 ? true : undefined), 10_000);
      expect(Date.now() - started).toBeLessThan(20_000);
      await stream.stop();
      expect(stream.events.map((e) => e.id)).toEqual(ids);
    } finally {
      await slow.close();
    }
  });

  it('validates its input and ends streams with UNAVAILABLE when the server drains', async () => {
    const bad = open(acme, { consumer: 'bad name' });
    await bad.done;
    expect(await rejection(Promise.reject(bad.error))).toEqual({
      code: 'INVALID_ARGUMENT',
      fields: ['consumer'],
    });
    const unknown = open(acme, { consumer: 'new-one', sources: ['globex-a'] });
    await unknown.done;
    expect(await rejection(Promise.reject(unknown.error))).toEqual({
      code: 'INVALID_ARGUMENT',
      fields: ['sources[0]'],
    });
    expect(await rejection(acme.ack({ consumer: 'never-created', eventIds: [] }))).toMatchObject({
      code: 'NOT_FOUND',
    });
    expect(await rejection(acme.ack({ consumer: 'resume', eventIds: ['1', 'x'] }))).toEqual({
      code: 'INVALID_ARGUMENT',
      fields: ['event_ids[1]'],
    });
    // Sources are fixed when the consumer is created.
    const other = open(acme, { consumer: 'only-b', sources: ['acme-a'] });
    await other.done;
    expect((await rejection(Promise.reject(other.error))).code).toBe('FAILED_PRECONDITION');

    const instance = await stack.addInstance();
    const client = instance.client(await stack.token({ admin: ACME }));
    const draining = open(client, { consumer: 'drain' });
    await consumerExists('drain');
    await instance.close();
    await draining.done;
    expect(draining.error).toBeInstanceOf(ClientError);
    expect(Status[(draining.error as ClientError).code]).toBe('UNAVAILABLE');
  });
});
