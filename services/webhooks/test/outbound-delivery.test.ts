import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { metrics } from '@sluice/observability';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { messageId } from '../src/ids';
import { generateSecret } from '../src/secrets';
import { startWebhooksStack, type WebhooksStack } from './helpers';

// Outbound delivery (issue 9 §3) against real HTTP receivers on loopback and a real PostgreSQL:
// signatures, retries, Retry-After, timeouts, 410, auto-disable, FIFO, slow endpoints, several
// instances, leases. Endpoints, secrets and messages are made by SQL (the publish trigger queues
// the deliveries), so these tests depend on nothing but the worker.

interface Received {
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
  readonly at: number;
}

interface Answer {
  readonly status?: number;
  readonly headers?: Record<string, string>;
  readonly body?: string;
  readonly delayMs?: number;
}

interface Receiver {
  readonly url: string;
  readonly requests: Received[];
  /** How to answer the n-th request (0-based); default 200. */
  answer: (req: Received, n: number) => Answer;
  close(): Promise<void>;
}

async function startReceiver(answer: Receiver['answer'] = () => ({})): Promise<Receiver> {
  const requests: Received[] = [];
  const receiver: Receiver = {
    url: '',
    requests,
    answer,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const got: Received = {
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        at: Date.now(),
      };
      const n = requests.length;
      requests.push(got);
      const a = receiver.answer(got, n);
      const send = () => {
        if (res.destroyed) return;
        res.writeHead(a.status ?? 200, a.headers ?? {});
        res.end(a.body ?? 'ok');
      };
      if (a.delayMs) setTimeout(send, a.delayMs);
      else send();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  (receiver as { url: string }).url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  return receiver;
}

async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface EndpointOptions {
  readonly url: string;
  readonly eventTypes: readonly string[];
  readonly headers?: Record<string, string>;
  readonly ordering?: 'none' | 'key' | 'tenant';
  readonly sendTraceparent?: boolean;
  /** Secrets to store, oldest first; expiresInMs sets expires_at (negative: expired). */
  readonly secrets?: readonly { secret: string; expiresInMs?: number }[];
}

async function createEndpoint(stack: WebhooksStack, o: EndpointOptions): Promise<string> {
  const { rows } = await stack.pool.query<{ id: string }>(
    `insert into sluice_webhooks.endpoints (url, headers, event_types, ordering, send_traceparent, owner_role)
     values ($1, $2, $3, $4, $5, 'service_role') returning id`,
    [o.url, JSON.stringify(o.headers ?? {}), o.eventTypes, o.ordering ?? 'none', o.sendTraceparent ?? false],
  );
  const id = (rows[0] as { id: string }).id;
  for (const s of o.secrets ?? [{ secret: generateSecret() }]) {
    await stack.pool.query(
      `insert into sluice_webhooks.secrets (endpoint_id, secret, expires_at)
       values ($1, $2, case when $3::bigint is null then null else now() + $3::bigint * interval '1 ms' end)`,
      [id, s.secret, s.expiresInMs ?? null],
    );
  }
  return id;
}

async function publish(
  stack: WebhooksStack,
  eventType: string,
  payload: string,
  extra: { orderingKey?: string; traceparent?: string } = {},
): Promise<string> {
  const { rows } = await stack.pool.query<{ id: string }>(
    `insert into sluice_webhooks.messages (event_type, payload, ordering_key, traceparent)
     values ($1, $2::jsonb, $3, $4) returning id`,
    [eventType, payload, extra.orderingKey ?? null, extra.traceparent ?? null],
  );
  return (rows[0] as { id: string }).id;
}

async function deliveryOf(stack: WebhooksStack, message: string) {
  const { rows } = await stack.pool.query<{ status: string; attempts: number; lease_token: string | null }>(
    'select status, attempts, lease_token from sluice_webhooks.deliveries where message_id = $1',
    [message],
  );
  return rows[0];
}

async function attemptsOf(stack: WebhooksStack, message: string) {
  const { rows } = await stack.pool.query<{
    attempt: number;
    outcome: string;
    status_code: number | null;
    error: string | null;
    response_body: string | null;
    duration_ms: number;
  }>(
    `select attempt, outcome, status_code, error, response_body, duration_ms
       from sluice_webhooks.attempts where message_id = $1 order by attempt`,
    [message],
  );
  return rows;
}

async function operationalEvents(stack: WebhooksStack, endpoint: string) {
  const { rows } = await stack.pool.query<{ event_type: string; external_id: string; body: string }>(
    `select i.event_type, i.external_id, convert_from(i.body, 'UTF8') as body
       from sluice_webhooks.inbox i join sluice_webhooks.sources s on s.id = i.source_id
      where s.name = 'sluice-operational' and i.external_id like '%' || $1 || '%' order by i.id`,
    [endpoint],
  );
  return rows.map((r) => ({ ...r, body: JSON.parse(r.body) as Record<string, unknown> }));
}

const receivers: Receiver[] = [];
async function receiver(answer?: Receiver['answer']): Promise<Receiver> {
  const r = await startReceiver(answer);
  receivers.push(r);
  return r;
}

afterAll(async () => {
  await Promise.all(receivers.map((r) => r.close()));
});

describe('outbound delivery', () => {
  let stack: WebhooksStack;

  beforeAll(async () => {
    stack = await startWebhooksStack({
      WEBHOOKS_RETRY_SCHEDULE: '1,1,1',
      WEBHOOKS_RETRY_JITTER_PERCENT: '20',
      WEBHOOKS_MIN_RETRY_AFTER_TIMEOUT_MS: '3000',
      WEBHOOKS_MAX_RETRY_AFTER_MS: '2500',
      WEBHOOKS_REQUEST_TIMEOUT_MS: '1000',
      WEBHOOKS_BREAKER_FAILURES: '1000',
      WEBHOOKS_ENDPOINT_CONCURRENCY: '2',
      WEBHOOKS_POLL_INTERVAL_MS: '100',
    });
  });

  afterAll(async () => {
    await stack?.close();
  });

  it('signs per Standard Webhooks, verified by the standardwebhooks library, with every secret in its rotation grace', async () => {
    const old = generateSecret();
    const current = generateSecret();
    const expired = generateSecret();
    const r = await receiver();
    await createEndpoint(stack, {
      url: r.url,
      eventTypes: ['sign.test'],
      headers: { 'X-Custom': 'yes', 'Webhook-Id': 'forged', 'Content-Type': 'text/plain' },
      secrets: [
        { secret: expired, expiresInMs: -1000 },
        { secret: old, expiresInMs: 3_600_000 },
        { secret: current },
      ],
    });
    const msg = await publish(stack, 'sign.test', '{"big": 12345678901234567890, "n": 1.10, "s": "é"}');
    const got = await waitFor('the delivery', () => r.requests[0]);
    const headers = got.headers as Record<string, string>;
    // Both valid secrets sign; the expired one does not.
    expect(headers['webhook-signature']?.split(' ')).toHaveLength(2);
    const payload = new Webhook(current).verify(got.body, headers) as Record<string, unknown>;
    expect(new Webhook(old).verify(got.body, headers)).toEqual(payload);
    expect(() => new Webhook(expired).verify(got.body, headers)).toThrow();
    expect(headers['webhook-id']).toBe(messageId(msg));
    expect(Math.abs(Number(headers['webhook-timestamp']) - Date.now() / 1000)).toBeLessThan(30);
    expect(headers['content-type']).toBe('application/json');
    expect(headers['user-agent']).toBe('Sluice-Webhooks');
    expect(headers['x-custom']).toBe('yes');
    expect(headers.traceparent).toBeUndefined();
    // The body: {"type","timestamp","data"}, numbers with their exact digits.
    expect(payload.type).toBe('sign.test');
    expect(Number.isNaN(Date.parse(String(payload.timestamp)))).toBe(false);
    expect(got.body).toContain('12345678901234567890');
    expect(got.body).toContain('1.10');
    expect((payload.data as Record<string, unknown>).s).toBe('é');
    await waitFor('succeeded', async () => (await deliveryOf(stack, msg))?.status === 'succeeded');
    const attempts = await attemptsOf(stack, msg);
    expect(attempts).toMatchObject([
      { attempt: 1, outcome: 'succeeded', status_code: 200, response_body: 'ok' },
    ]);
  });

  it('credentials in the endpoint URL are sent as HTTP Basic authentication', async () => {
    const r = await receiver();
    await createEndpoint(stack, {
      url: r.url.replace('http://', 'http://hook:s%40cret@'),
      eventTypes: ['basic.test'],
    });
    await publish(stack, 'basic.test', '{}');
    const got = await waitFor('the delivery', () => r.requests[0]);
    expect(got.headers.authorization).toBe(`Basic ${Buffer.from('hook:s@cret').toString('base64')}`);
  });

  it('sends traceparent only when the endpoint asks for it', async () => {
    const r = await receiver();
    await createEndpoint(stack, { url: r.url, eventTypes: ['trace.test'], sendTraceparent: true });
    const writer = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    await publish(stack, 'trace.test', '{}', { traceparent: writer });
    const got = await waitFor('the delivery', () => r.requests[0]);
    // Tracing is off in tests: the writer's own context is passed on.
    expect(got.headers.traceparent).toBe(writer);
  });

  it('retries on the schedule with jitter, with the same webhook-id, and fails the delivery when exhausted', async () => {
    const r = await receiver(() => ({ status: 500, body: 'x'.repeat(30_000) }));
    const endpoint = await createEndpoint(stack, { url: r.url, eventTypes: ['retry.test'] });
    const msg = await publish(stack, 'retry.test', '{"n": 1}');
    await waitFor('failed', async () => (await deliveryOf(stack, msg))?.status === 'failed', 30_000);
    // 1 + 3 retries ("1,1,1").
    expect(r.requests).toHaveLength(4);
    expect(new Set(r.requests.map((q) => q.headers['webhook-id']))).toEqual(new Set([messageId(msg)]));
    for (let i = 1; i < r.requests.length; i++) {
      const gap = (r.requests[i] as Received).at - (r.requests[i - 1] as Received).at;
      // 1 s ± 20 %, plus the poll interval and scheduling slack.
      expect(gap).toBeGreaterThanOrEqual(790);
      expect(gap).toBeLessThan(4_000);
    }
    const attempts = await attemptsOf(stack, msg);
    expect(attempts.map((a) => [a.attempt, a.outcome, a.status_code])).toEqual([
      [1, 'http_error', 500],
      [2, 'http_error', 500],
      [3, 'http_error', 500],
      [4, 'http_error', 500],
    ]);
    // The first 20 KB of the response only.
    expect(attempts[0]?.response_body).toHaveLength(20 * 1024);
    const events = await operationalEvents(stack, endpoint);
    expect(events.map((e) => e.event_type)).toEqual(['endpoint.failing', 'message.exhausted']);
    expect(events[1]?.body).toMatchObject({ type: 'message.exhausted', endpoint_id: endpoint, attempts: 4 });
    const { rows } = await stack.pool.query(
      'select failing_since from sluice_webhooks.endpoints where id = $1',
      [endpoint],
    );
    expect(rows[0].failing_since).not.toBeNull();
  });

  it('honours Retry-After, and cuts a longer one to WEBHOOKS_MAX_RETRY_AFTER_MS', async () => {
    const honoured = await receiver((_q, n) =>
      n === 0 ? { status: 503, headers: { 'retry-after': '2' } } : {},
    );
    const clamped = await receiver((_q, n) =>
      n === 0 ? { status: 503, headers: { 'retry-after': '3600' } } : {},
    );
    await createEndpoint(stack, { url: honoured.url, eventTypes: ['ra.honoured'] });
    await createEndpoint(stack, { url: clamped.url, eventTypes: ['ra.clamped'] });
    await publish(stack, 'ra.honoured', '{}');
    await publish(stack, 'ra.clamped', '{}');
    await waitFor('both retried', () => honoured.requests.length >= 2 && clamped.requests.length >= 2);
    const gap = (r: Receiver) => (r.requests[1] as Received).at - (r.requests[0] as Received).at;
    expect(gap(honoured)).toBeGreaterThanOrEqual(1_950);
    expect(gap(honoured)).toBeLessThan(6_000);
    // 3600 s asked, 2.5 s allowed.
    expect(gap(clamped)).toBeGreaterThanOrEqual(2_450);
    expect(gap(clamped)).toBeLessThan(10_000);
  });

  it('waits at least WEBHOOKS_MIN_RETRY_AFTER_TIMEOUT_MS after a timeout or a 429', async () => {
    const slow = await receiver((_q, n) => (n === 0 ? { delayMs: 3_000 } : {}));
    const busy = await receiver((_q, n) => (n === 0 ? { status: 429 } : {}));
    await createEndpoint(stack, { url: slow.url, eventTypes: ['timeout.test'] });
    await createEndpoint(stack, { url: busy.url, eventTypes: ['busy.test'] });
    const msg = await publish(stack, 'timeout.test', '{}');
    await publish(stack, 'busy.test', '{}');
    await waitFor('both retried', () => slow.requests.length >= 2 && busy.requests.length >= 2, 30_000);
    const gap = (r: Receiver) => (r.requests[1] as Received).at - (r.requests[0] as Received).at;
    // The schedule says 1 s; the timeout (1 s) plus 3 s at least.
    expect(gap(slow)).toBeGreaterThanOrEqual(3_950);
    expect(gap(busy)).toBeGreaterThanOrEqual(2_950);
    const attempts = await attemptsOf(stack, msg);
    expect(attempts[0]).toMatchObject({ outcome: 'timeout' });
    expect(attempts[0]?.duration_ms).toBeGreaterThanOrEqual(900);
  });

  it('does not follow redirects: a 3xx is a failed attempt', async () => {
    const target = await receiver();
    const r = await receiver(() => ({ status: 302, headers: { location: target.url } }));
    await createEndpoint(stack, { url: r.url, eventTypes: ['redirect.test'] });
    const msg = await publish(stack, 'redirect.test', '{}');
    await waitFor('an attempt', async () => (await attemptsOf(stack, msg))[0]);
    const attempts = await attemptsOf(stack, msg);
    expect(attempts[0]).toMatchObject({ outcome: 'http_error', status_code: 302 });
    expect(attempts[0]?.error).toContain('not followed');
    expect(target.requests).toHaveLength(0);
  });

  it('410 Gone disables the endpoint (reason gone); its pending deliveries stay pending until it is enabled again', async () => {
    const r = await receiver(() => ({ status: 410 }));
    const endpoint = await createEndpoint(stack, { url: r.url, eventTypes: ['gone.test'] });
    const first = await publish(stack, 'gone.test', '{"n": 1}');
    await waitFor('disabled', async () => {
      const { rows } = await stack.pool.query(
        'select enabled, disabled_reason from sluice_webhooks.endpoints where id = $1',
        [endpoint],
      );
      return rows[0].enabled === false ? rows[0] : undefined;
    });
    const { rows } = await stack.pool.query(
      'select disabled_reason from sluice_webhooks.endpoints where id = $1',
      [endpoint],
    );
    expect(rows[0].disabled_reason).toBe('gone');
    // Deliveries queued before the disable (made by SQL here) wait for the endpoint.
    const { rows: queued } = await stack.pool.query<{ id: string }>(
      `insert into sluice_webhooks.messages (event_type, payload, endpoint_id) values ('gone.test', '{}', $1) returning id`,
      [endpoint],
    );
    await stack.pool.query(
      'insert into sluice_webhooks.deliveries (message_id, endpoint_id) values ($1, $2)',
      [queued[0]?.id, endpoint],
    );
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    expect(r.requests).toHaveLength(1);
    expect((await deliveryOf(stack, first))?.status).toBe('pending');
    expect(await deliveryOf(stack, queued[0]?.id as string)).toMatchObject({
      status: 'pending',
      attempts: 0,
    });
    const events = await operationalEvents(stack, endpoint);
    // One failed attempt is not reported as failing; the disable is.
    expect(events.map((e) => e.event_type)).toEqual(['endpoint.disabled']);
    expect(events[0]?.body).toMatchObject({
      type: 'endpoint.disabled',
      reason: 'gone',
      endpoint_id: endpoint,
    });
    // Enabled again, the endpoint gets them all: deferred, never lost.
    r.answer = () => ({});
    await stack.pool.query(
      'update sluice_webhooks.endpoints set enabled = true, disabled_reason = null where id = $1',
      [endpoint],
    );
    await waitFor('both delivered', async () => {
      const a = await deliveryOf(stack, first);
      const b = await deliveryOf(stack, queued[0]?.id as string);
      return a?.status === 'succeeded' && b?.status === 'succeeded';
    });
    expect(r.requests).toHaveLength(3);
  });

  it('disables an endpoint failing for longer than WEBHOOKS_DISABLE_AFTER_FAILING_HOURS (5 days)', async () => {
    const r = await receiver(() => ({ status: 500 }));
    const endpoint = await createEndpoint(stack, { url: r.url, eventTypes: ['failing.test'] });
    await stack.pool.query(
      `update sluice_webhooks.endpoints set failing_since = now() - interval '5 days 1 minute' where id = $1`,
      [endpoint],
    );
    await publish(stack, 'failing.test', '{}');
    const row = await waitFor('disabled', async () => {
      const { rows } = await stack.pool.query(
        'select enabled, disabled_reason from sluice_webhooks.endpoints where id = $1',
        [endpoint],
      );
      return rows[0].enabled === false ? rows[0] : undefined;
    });
    expect(row.disabled_reason).toBe('failing');
    expect(r.requests).toHaveLength(1);
    const events = await operationalEvents(stack, endpoint);
    expect(events.map((e) => e.event_type)).toEqual(['endpoint.disabled']);
    expect(events[0]?.body).toMatchObject({ reason: 'failing' });
  });

  it('reports a failing endpoint once per failing period; one failing for less than 5 days stays enabled and recovers', async () => {
    // The first message fails all 4 attempts; then the endpoint answers again.
    const r = await receiver((_q, n) => (n < 4 ? { status: 500 } : {}));
    const endpoint = await createEndpoint(stack, { url: r.url, eventTypes: ['recover.test'] });
    await stack.pool.query(
      `update sluice_webhooks.endpoints set failing_since = now() - interval '4 days' where id = $1`,
      [endpoint],
    );
    const lost = await publish(stack, 'recover.test', '{"n": 1}');
    await waitFor('exhausted', async () => (await deliveryOf(stack, lost))?.status === 'failed');
    const { rows: failing } = await stack.pool.query(
      'select enabled, failing_since from sluice_webhooks.endpoints where id = $1',
      [endpoint],
    );
    expect(failing[0].enabled).toBe(true);
    expect(Date.now() - (failing[0].failing_since as Date).getTime()).toBeGreaterThan(3.9 * 86_400_000);
    const msg = await publish(stack, 'recover.test', '{"n": 2}');
    await waitFor('succeeded', async () => (await deliveryOf(stack, msg))?.status === 'succeeded');
    const { rows } = await stack.pool.query(
      'select enabled, failing_since from sluice_webhooks.endpoints where id = $1',
      [endpoint],
    );
    expect(rows[0]).toMatchObject({ enabled: true, failing_since: null });
    const events = await operationalEvents(stack, endpoint);
    expect(events.map((e) => e.event_type)).toEqual([
      'endpoint.failing',
      'message.exhausted',
      'endpoint.recovered',
    ]);
    // The same failing period: the recovery names when it began.
    expect(events[2]?.body.failing_since).toBe(events[0]?.body.failing_since);
    expect(Date.now() - Date.parse(String(events[2]?.body.failing_since))).toBeGreaterThan(3.9 * 86_400_000);
  });

  it('an endpoint failing now and then is not reported: a retried 500 is neither failing nor recovered', async () => {
    const r = await receiver((_q, n) => (n === 0 ? { status: 500 } : {}));
    const endpoint = await createEndpoint(stack, { url: r.url, eventTypes: ['blip.test'] });
    const msg = await publish(stack, 'blip.test', '{}');
    await waitFor('succeeded', async () => (await deliveryOf(stack, msg))?.status === 'succeeded');
    const { rows } = await stack.pool.query(
      'select failing_since from sluice_webhooks.endpoints where id = $1',
      [endpoint],
    );
    expect(rows[0].failing_since).toBeNull();
    expect(await operationalEvents(stack, endpoint)).toEqual([]);
  });

  it('FIFO per key: each key in order, a failing head holds back only its own key', async () => {
    // a1 fails twice; b1, b2 must not wait for it; a2 and a3 must.
    const log: { k: string; ok: boolean }[] = [];
    const r = await receiver((q) => {
      const { k } = (JSON.parse(q.body) as { data: { k: string } }).data;
      const ok = !(k === 'a1' && log.filter((e) => e.k === 'a1').length < 2);
      log.push({ k, ok });
      return ok ? {} : { status: 500 };
    });
    await createEndpoint(stack, { url: r.url, eventTypes: ['fifo.test'], ordering: 'key' });
    for (const [k, key] of [
      ['a1', 'A'],
      ['a2', 'A'],
      ['b1', 'B'],
      ['a3', 'A'],
      ['b2', 'B'],
    ] as const)
      await publish(stack, 'fifo.test', JSON.stringify({ k }), { orderingKey: key });
    const delivered = () => log.filter((e) => e.ok).map((e) => e.k);
    await waitFor('all five delivered', () => delivered().length === 5 || undefined);
    const order = delivered();
    expect(order.filter((k) => k.startsWith('a'))).toEqual(['a1', 'a2', 'a3']);
    expect(order.filter((k) => k.startsWith('b'))).toEqual(['b1', 'b2']);
    // B went through while A's head was failing (its retries are ≥ 0.8 s apart).
    expect(order.indexOf('b2')).toBeLessThan(order.indexOf('a1'));
    // Nothing of A was sent before a1 succeeded.
    expect(log.map((e) => e.k).filter((k) => k.startsWith('a'))).toEqual(['a1', 'a1', 'a1', 'a2', 'a3']);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(log).toHaveLength(7);
  });

  it('a slow endpoint does not delay another', async () => {
    const slow = await receiver(() => ({ delayMs: 800 }));
    const fast = await receiver();
    await createEndpoint(stack, { url: slow.url, eventTypes: ['slow.test'] });
    await createEndpoint(stack, { url: fast.url, eventTypes: ['fast.test'] });
    for (let i = 0; i < 10; i++) await publish(stack, 'slow.test', `{"i": ${i}}`);
    const started = Date.now();
    for (let i = 0; i < 5; i++) await publish(stack, 'fast.test', `{"i": ${i}}`);
    await waitFor('fast delivered', () => fast.requests.length === 5 || undefined);
    const fastDone = Date.now() - started;
    // The slow one takes 10 × 0.8 s / 2 (its per-endpoint cap) = 4 s; the fast one is not queued behind it.
    expect(fastDone).toBeLessThan(3_500);
    expect(slow.requests.length).toBeLessThan(10);
    await waitFor('slow delivered', () => slow.requests.length === 10 || undefined);
  });

  it('two instances deliver each message once', async () => {
    const second = await stack.addInstance();
    try {
      const r = await receiver();
      await createEndpoint(stack, { url: r.url, eventTypes: ['twice.test'] });
      const ids = new Set<string>();
      for (let i = 0; i < 60; i++) ids.add(messageId(await publish(stack, 'twice.test', `{"i": ${i}}`)));
      await waitFor('all delivered', async () => {
        const { rows } = await stack.pool.query(
          `select count(*)::int as n from sluice_webhooks.deliveries d join sluice_webhooks.messages m on m.id = d.message_id
            where m.event_type = 'twice.test' and d.status = 'succeeded'`,
        );
        return rows[0].n === 60 || undefined;
      });
      const counts = new Map<string, number>();
      for (const q of r.requests) {
        const id = String(q.headers['webhook-id']);
        counts.set(id, (counts.get(id) ?? 0) + 1);
      }
      expect(new Set(counts.keys())).toEqual(ids);
      expect([...counts.values()].every((n) => n === 1)).toBe(true);
    } finally {
      await second.close();
    }
  });

  it('a lease that ends (its worker died) brings the delivery back, with the same webhook-id; the dead lease settles nothing', async () => {
    const r = await receiver();
    await createEndpoint(stack, { url: r.url, eventTypes: ['lease.test'] });
    // A "worker" claims the delivery in the transaction that queues it, and never completes.
    const client = await stack.pool.connect();
    let msg: string;
    let deadToken: string;
    try {
      await client.query('begin');
      const { rows } = await client.query<{ id: string }>(
        `insert into sluice_webhooks.messages (event_type, payload) values ('lease.test', '{}') returning id`,
      );
      msg = (rows[0] as { id: string }).id;
      const { rows: leased } = await client.query<{ lease_token: string }>(
        `update sluice_webhooks.deliveries
            set attempts = attempts + 1, lease_token = gen_random_uuid(), next_attempt_at = now() + interval '2 seconds'
          where message_id = $1 returning lease_token`,
        [msg],
      );
      deadToken = (leased[0] as { lease_token: string }).lease_token;
      await client.query('commit');
    } finally {
      client.release();
    }
    const committed = Date.now();
    const got = await waitFor('the redelivery', () => r.requests[0]);
    expect(got.at - committed).toBeGreaterThanOrEqual(1_500);
    expect(got.headers['webhook-id']).toBe(messageId(msg));
    await waitFor('succeeded', async () => (await deliveryOf(stack, msg))?.status === 'succeeded');
    expect(await deliveryOf(stack, msg)).toMatchObject({ attempts: 2, lease_token: null });
    expect((await attemptsOf(stack, msg)).map((a) => a.attempt)).toEqual([2]);
    // The dead worker's lease is gone: its late completion cannot settle the delivery.
    const { rowCount } = await stack.pool.query(
      `update sluice_webhooks.deliveries set status = 'failed' where message_id = $1 and lease_token = $2`,
      [msg, deadToken],
    );
    expect(rowCount).toBe(0);
    expect(r.requests).toHaveLength(1);
  });

  it('NOTIFY wakes the workers only for deliveries due now: a claim, a retry or a success wakes nobody', async () => {
    const listener = await stack.pool.connect();
    const notes: number[] = [];
    listener.on('notification', (n) => {
      if (n.channel === 'sluice_webhooks') notes.push(Date.now());
    });
    try {
      await listener.query('listen sluice_webhooks');
      // Idle (the worker polling every 100 ms, claiming nothing): silence.
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      expect(notes).toHaveLength(0);
      const r = await receiver((_q, n) => (n === 0 ? { status: 500 } : {}));
      await createEndpoint(stack, { url: r.url, eventTypes: ['notify.test'] });
      const msg = await publish(stack, 'notify.test', '{}');
      // One for the queued delivery; its claim, its failure (retry in 1 s), its second claim and
      // its success notify nobody.
      await waitFor('succeeded', async () => (await deliveryOf(stack, msg))?.status === 'succeeded');
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(notes).toHaveLength(1);
      // Made due again (a replay): one more.
      await stack.pool.query(
        `update sluice_webhooks.deliveries set status = 'pending', next_attempt_at = now() where message_id = $1`,
        [msg],
      );
      await waitFor('redelivered', () => r.requests.length === 3 || undefined);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(notes).toHaveLength(2);
    } finally {
      await listener.query('unlisten *');
      listener.release();
    }
  });

  it('counts attempts by outcome, their durations, the delivery lag and operational events in metrics', async () => {
    const text = await metrics.metrics();
    expect(text).toMatch(/webhooks_deliveries_total\{outcome="succeeded"\} [1-9]/);
    expect(text).toMatch(/webhooks_deliveries_total\{outcome="http_error"\} [1-9]/);
    expect(text).toMatch(/webhooks_deliveries_total\{outcome="timeout"\} [1-9]/);
    expect(text).toMatch(/webhooks_delivery_seconds_count [1-9]/);
    expect(text).toMatch(/webhooks_delivery_lag_seconds_count [1-9]/);
    expect(text).toMatch(/webhooks_endpoint_events_total\{event="disabled"\} [1-9]/);
    expect(text).toMatch(/webhooks_endpoint_events_total\{event="exhausted"\} [1-9]/);
    expect(text).toMatch(/webhooks_deliveries_in_flight \d/);
    expect(text).toMatch(/webhooks_breakers_open \d/);
  });
});
