import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebhookSender } from '../src/outbound/sender';
import { blockedAddressReason, SsrfGuard } from '../src/outbound/ssrf-guard';
import { insertEndpoint, startWebhooksStack, type WebhooksStack } from './helpers';

// The SSRF guard (issue 9 §3): outbound requests never reach loopback, private, link-local,
// CGNAT, metadata or other non-public addresses, in any spelling, by name or literal; the
// allowlist is the only way through; redirects are never followed.

describe('the address rules', () => {
  it('refuses non-public IPv4 and IPv6 addresses in every form, and lets public ones through', () => {
    const refused = [
      '127.0.0.1',
      '127.255.255.254',
      '10.0.0.1',
      '172.16.0.1',
      '172.31.255.255',
      '192.168.1.1',
      '169.254.169.254',
      '169.254.0.1',
      '100.64.0.1',
      '0.0.0.0',
      '0.1.2.3',
      '224.0.0.1',
      '239.255.255.250',
      '240.0.0.1',
      '255.255.255.255',
      '192.0.0.8',
      '198.18.0.1',
      '::1',
      '::',
      '[::1]',
      'fe80::1',
      'fe80::1%eth0',
      'fc00::1',
      'fd00:ec2::254',
      'ff02::1',
      '::ffff:127.0.0.1',
      '::ffff:7f00:1',
      '[::ffff:10.0.0.1]',
      '::ffff:169.254.169.254',
      '::127.0.0.1', // IPv4-compatible
      '64:ff9b::7f00:1', // NAT64
      '2002:7f00:1::', // 6to4
      '2001::1', // Teredo
      '2001:db8::1',
      'not-an-ip',
    ];
    for (const a of refused) expect(blockedAddressReason(a), a).toBeDefined();
    const allowed = [
      '8.8.8.8',
      '1.1.1.1',
      '172.32.0.1',
      '100.128.0.1',
      '2606:4700:4700::1111',
      '::ffff:8.8.8.8',
    ];
    for (const a of allowed) expect(blockedAddressReason(a), a).toBeUndefined();
  });

  it('the allowlist admits addresses, blocks, names and ports it lists, nothing else', () => {
    const guard = new SsrfGuard({
      allowedHosts: ['10.1.0.0/16', '127.0.0.1:8080', '[::1]:9000', 'fd00::/8', 'internal.example'],
      httpsOnly: false,
    });
    expect(guard.addressRefusal('10.1.2.3', 80)).toBeUndefined();
    expect(guard.addressRefusal('10.2.0.1', 80)).toBeDefined();
    expect(guard.addressRefusal('127.0.0.1', 8080)).toBeUndefined();
    expect(guard.addressRefusal('::ffff:127.0.0.1', 8080)).toBeUndefined();
    expect(guard.addressRefusal('127.0.0.1', 8081)).toBeDefined();
    expect(guard.addressRefusal('::1', 9000)).toBeUndefined();
    expect(guard.addressRefusal('::1', 9001)).toBeDefined();
    expect(guard.addressRefusal('fd12::1', 443)).toBeUndefined();
    expect(() => guard.checkUrl(new URL('http://internal.example/'))).not.toThrow();
    expect(() => guard.checkUrl(new URL('http://127.0.0.1:8081/'))).toThrow(/non-public/);
    expect(() => guard.checkUrl(new URL('http://127.0.0.1:8080/'))).not.toThrow();
  });

  it('WEBHOOKS_HTTPS_ONLY refuses http URLs; other schemes are always refused', () => {
    const strict = new SsrfGuard({ allowedHosts: [], httpsOnly: true });
    expect(() => strict.checkUrl(new URL('http://example.com/'))).toThrow(/https/);
    expect(() => strict.checkUrl(new URL('https://example.com/'))).not.toThrow();
    const lax = new SsrfGuard({ allowedHosts: [], httpsOnly: false });
    expect(() => lax.checkUrl(new URL('http://example.com/'))).not.toThrow();
    expect(() => lax.checkUrl(new URL('ftp://example.com/'))).toThrow(/scheme/);
    expect(() => lax.checkUrl(new URL('file:///etc/passwd'))).toThrow(/scheme/);
  });

  it('a name resolving to loopback is refused by the lookup, before any connection', async () => {
    let hits = 0;
    const server = http.createServer((_req, res) => {
      hits++;
      res.end('ok');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    const sender = new WebhookSender(new SsrfGuard({ allowedHosts: [], httpsOnly: false }), 2_000);
    try {
      const result = await sender.send({ url: `http://localhost:${port}/`, headers: {}, body: '{}' });
      expect(result).toMatchObject({ outcome: 'blocked' });
      expect(result.error).toMatch(/localhost resolves only to non-public addresses/);
      expect(hits).toBe(0);
      // The same name allowed by name goes through.
      const open = new WebhookSender(new SsrfGuard({ allowedHosts: ['localhost'], httpsOnly: false }), 2_000);
      expect(await open.send({ url: `http://localhost:${port}/`, headers: {}, body: '{}' })).toMatchObject({
        outcome: 'succeeded',
        statusCode: 200,
      });
      await open.close();
      expect(hits).toBe(1);
    } finally {
      await sender.close();
      server.close();
    }
  });
});

describe('deliveries to non-public addresses', () => {
  let stack: WebhooksStack;
  let target: http.Server;
  let targetPort = 0;
  let targetHits = 0;
  let redirector: http.Server;
  let redirectorPort = 0;

  beforeAll(async () => {
    target = http.createServer((_req, res) => {
      targetHits++;
      res.end('reached');
    });
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
    targetPort = (target.address() as AddressInfo).port;
    redirector = http.createServer((_req, res) => {
      res.writeHead(302, { location: `http://127.0.0.1:${targetPort}/` });
      res.end();
    });
    await new Promise<void>((resolve) => redirector.listen(0, '127.0.0.1', resolve));
    redirectorPort = (redirector.address() as AddressInfo).port;
    // Only the redirector's port is allowed: the target (same host, another port) is not.
    stack = await startWebhooksStack({
      WEBHOOKS_ALLOWED_HOSTS: `127.0.0.1:${redirectorPort}`,
      WEBHOOKS_RETRY_SCHEDULE: '60',
      WEBHOOKS_POLL_INTERVAL_MS: '100',
    });
  });

  afterAll(async () => {
    await stack?.close();
    target?.close();
    redirector?.close();
  });

  async function deliverTo(url: string, eventType: string) {
    const endpoint = await insertEndpoint(stack.pool, url, eventType);
    const { rows: msg } = await stack.pool.query<{ id: string }>(
      `insert into sluice_webhooks.messages (event_type, payload) values ($1, '{}') returning id`,
      [eventType],
    );
    const message = (msg[0] as { id: string }).id;
    // Until its first attempt is recorded (it settles the delivery in the same transaction).
    const deadline = Date.now() + 20_000;
    for (;;) {
      const { rows: a } = await stack.pool.query(
        'select 1 from sluice_webhooks.attempts where message_id = $1',
        [message],
      );
      if (a.length > 0) break;
      if (Date.now() > deadline) throw new Error(`no attempt for ${url}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const { rows: d } = await stack.pool.query(
      'select status, attempts from sluice_webhooks.deliveries where message_id = $1',
      [message],
    );
    const { rows: attempts } = await stack.pool.query(
      'select outcome, status_code, error from sluice_webhooks.attempts where message_id = $1 order by attempt',
      [message],
    );
    return { endpoint, delivery: d[0], attempts };
  }

  const cases: [string, () => string][] = [
    ['127.0.0.1', () => `http://127.0.0.1:${targetPort}/`],
    ['[::ffff:127.0.0.1]', () => `http://[::ffff:127.0.0.1]:${targetPort}/`],
    ['[::1]', () => `http://[::1]:${targetPort}/`],
    ['169.254.169.254 (metadata)', () => 'http://169.254.169.254/latest/meta-data/'],
    ['10.0.0.1', () => 'http://10.0.0.1/'],
    ['0.0.0.0', () => `http://0.0.0.0:${targetPort}/`],
    ['127.1 (short form)', () => `http://127.1:${targetPort}/`],
    ['2130706433 (decimal form)', () => `http://2130706433:${targetPort}/`],
    ['localhost (a name resolving to loopback)', () => `http://localhost:${targetPort}/`],
    ['[fd00:ec2::254] (metadata)', () => 'http://[fd00:ec2::254]/'],
  ];

  for (const [name, url] of cases) {
    it(`refuses ${name}: one blocked attempt, the delivery failed at once, nothing reached`, async () => {
      const { endpoint, delivery, attempts } = await deliverTo(
        url(),
        `ssrf.${name.replace(/[^a-z0-9]/gi, '')}`,
      );
      expect(delivery).toMatchObject({ status: 'failed', attempts: 1 });
      expect(attempts).toHaveLength(1);
      expect(attempts[0]).toMatchObject({ outcome: 'blocked', status_code: null });
      expect(attempts[0].error).toMatch(/non-public/);
      expect(targetHits).toBe(0);
      const { rows } = await stack.pool.query(
        `select convert_from(body, 'UTF8')::jsonb as body from sluice_webhooks.inbox where external_id like $1`,
        [`exhausted:${endpoint}:%`],
      );
      expect(rows[0]?.body).toMatchObject({ type: 'message.exhausted', reason: 'blocked' });
    });
  }

  it('fails every delivery to a blocked URL at once (the breaker does not count refusals)', async () => {
    const endpoint = await insertEndpoint(stack.pool, 'http://10.0.0.1/', 'ssrf.many');
    // More than WEBHOOKS_BREAKER_FAILURES (5) and than one claim takes of an endpoint (16): an
    // open breaker would hold the rest back for 30 s per probe.
    await stack.pool.query(
      `insert into sluice_webhooks.messages (event_type, payload) select 'ssrf.many', '{}' from generate_series(1, 40)`,
    );
    const deadline = Date.now() + 10_000;
    for (;;) {
      const { rows: done } = await stack.pool.query<{ n: number }>(
        `select count(*)::int as n from sluice_webhooks.deliveries where endpoint_id = $1 and status = 'failed' and attempts = 1`,
        [endpoint],
      );
      if (done[0]?.n === 40) break;
      if (Date.now() > deadline) throw new Error(`only ${done[0]?.n} of 40 failed`);
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  it('does not follow a redirect to a private address: the 302 is a failed attempt', async () => {
    const { delivery, attempts } = await deliverTo(
      `http://127.0.0.1:${redirectorPort}/hook`,
      'ssrf.redirect',
    );
    expect(attempts).toHaveLength(1);
    expect(attempts[0]).toMatchObject({ outcome: 'http_error', status_code: 302 });
    expect(attempts[0].error).toMatch(/redirect to http:\/\/127\.0\.0\.1:\d+\/ not followed/);
    // Retried later (the schedule says 60 s), never followed.
    expect(delivery).toMatchObject({ status: 'pending', attempts: 1 });
    expect(targetHits).toBe(0);
  });
});
