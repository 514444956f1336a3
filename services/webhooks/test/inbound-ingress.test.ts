import { createHmac, randomUUID } from 'node:crypto';
import { sign as githubSign } from '@octokit/webhooks-methods';
import { metrics } from '@sluice/observability';
import { Webhook } from 'standardwebhooks';
import Stripe from 'stripe';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACME, startWebhooksStack, type WebhooksStack } from './helpers';
import {
  addSecret,
  createSource,
  eventually,
  inboxRows,
  newSecret,
  post,
  sourceName,
} from './inbound/helpers';

// POST /webhooks/{source} over real HTTP against a real PostgreSQL: every scheme valid, forged,
// stale and rotated, signed by the scheme's own library; the stored row checked on a fresh
// connection right after the 2xx; duplicates; the refusals and their JSON errors.

let stack: WebhooksStack;

beforeAll(async () => {
  stack = await startWebhooksStack();
});

afterAll(async () => {
  await stack?.close();
});

const nowSeconds = () => Math.floor(Date.now() / 1000);

/** Headers the standardwebhooks library signs with. */
function standardHeaders(secret: string, body: string, id = `msg_${randomUUID()}`, at = nowSeconds()) {
  return {
    'webhook-id': id,
    'webhook-timestamp': String(at),
    'webhook-signature': new Webhook(secret).sign(id, new Date(at * 1000), body),
  };
}

async function counted(metric: string, labels: Record<string, string>): Promise<number> {
  const values = (await metrics.getSingleMetric(metric)?.get())?.values ?? [];
  return values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value ?? 0;
}

const rejected = (source: string, reason: string) =>
  counted('webhooks_inbound_rejected_total', { source, reason });

describe('standard-webhooks', () => {
  const secret = newSecret();
  const name = sourceName('std');
  let sourceId: string;
  beforeAll(async () => {
    sourceId = await createSource(stack, {
      name,
      kind: 'standard-webhooks',
      tenantId: ACME,
      secrets: [secret],
      settings: { keepHeaders: ['x-extra'] },
    });
  });

  it('stores a valid event before answering 200, with the headers that matter', async () => {
    const body = '{"type":"user.created","data":{"id":12345678901234567890}}';
    const headers = standardHeaders(secret, body);
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const answer = await post(stack.httpUrl, `/webhooks/${name}`, body, {
      ...headers,
      traceparent,
      'x-extra': 'kept',
      'x-other': 'dropped',
    });
    expect(answer.status).toBe(200);
    expect(await counted('webhooks_inbound_requests_total', { source: name, status: '200' })).toBe(1);
    expect(answer.json).toEqual({
      id: expect.any(String),
      external_id: headers['webhook-id'],
      duplicate: false,
    });
    // Durable: on a fresh connection right after the answer.
    const rows = await inboxRows(stack, sourceId);
    expect(rows).toHaveLength(1);
    const row = rows[0]!;
    expect(row.id).toBe(answer.json.id);
    expect(row.body.toString()).toBe(body);
    expect(row.external_id).toBe(headers['webhook-id']);
    expect(row.event_type).toBe('user.created');
    expect(row.tenant_id).toBe(ACME);
    expect(row.traceparent).toBe(traceparent);
    expect(row.change).toBeNull();
    expect(row.headers).toEqual({
      ...headers,
      traceparent,
      'content-type': 'application/json',
      'x-extra': 'kept',
    });
  });

  it('answers a duplicate with the same status and id, stored once', async () => {
    const body = '{"type":"dup"}';
    const headers = standardHeaders(secret, body);
    const first = await post(stack.httpUrl, `/webhooks/${name}`, body, headers);
    const second = await post(stack.httpUrl, `/webhooks/${name}`, body, headers);
    expect(first.status).toBe(200);
    expect(second.status).toBe(200);
    expect(second.json).toEqual({ ...first.json, duplicate: true });
    const rows = await inboxRows(stack, sourceId);
    expect(rows.filter((r) => r.external_id === headers['webhook-id'])).toHaveLength(1);
  });

  it('refuses a forged, unsigned or stale request with 401, stores nothing, and counts it', async () => {
    const before = (await inboxRows(stack, sourceId)).length;
    const body = '{"type":"forged"}';
    const forgedBefore = await rejected(name, 'bad_signature');
    const forged = await post(stack.httpUrl, `/webhooks/${name}`, body, standardHeaders(newSecret(), body));
    expect(forged.status).toBe(401);
    expect(forged.json).toEqual({ error: { code: 'bad_signature', message: expect.any(String) } });
    expect(await rejected(name, 'bad_signature')).toBe(forgedBefore + 1);

    const tampered = standardHeaders(secret, body);
    expect((await post(stack.httpUrl, `/webhooks/${name}`, `${body} `, tampered)).status).toBe(401);

    const unsigned = await post(stack.httpUrl, `/webhooks/${name}`, body);
    expect(unsigned.status).toBe(401);
    expect(unsigned.json.error.code).toBe('missing_signature');

    for (const at of [nowSeconds() - 301, nowSeconds() + 301]) {
      const stale = await post(
        stack.httpUrl,
        `/webhooks/${name}`,
        body,
        standardHeaders(secret, body, undefined, at),
      );
      expect(stale.status).toBe(401);
      expect(stale.json.error.code).toBe('stale_timestamp');
    }
    expect(await inboxRows(stack, sourceId)).toHaveLength(before);
  });

  it('takes a secret added by rotation within seconds, and drops an expired one', async () => {
    const next = newSecret();
    await addSecret(stack, sourceId, next);
    // Accepted at once or after the cache's few seconds; never more.
    await eventually(async () => {
      const body = `{"type":"rotated","n":"${randomUUID()}"}`;
      return (
        (await post(stack.httpUrl, `/webhooks/${name}`, body, standardHeaders(next, body))).status === 200
      );
    }, 5_000);
    // The old secret still works during its grace period…
    const body = '{"type":"old"}';
    expect((await post(stack.httpUrl, `/webhooks/${name}`, body, standardHeaders(secret, body))).status).toBe(
      200,
    );
    // …and not after it.
    await stack.pool.query('update sluice_webhooks.secrets set expires_at = now() where secret = $1', [
      secret,
    ]);
    await eventually(async () => {
      const b = `{"type":"expired","n":"${randomUUID()}"}`;
      return (await post(stack.httpUrl, `/webhooks/${name}`, b, standardHeaders(secret, b))).status === 401;
    }, 5_000);
  });

  it('verifies ed25519 (v1a) signatures with a whpk_ public key', async () => {
    const { generateKeyPairSync, sign } = await import('node:crypto');
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x as string, 'base64url');
    const edName = sourceName('ed');
    const id = await createSource(stack, {
      name: edName,
      kind: 'standard-webhooks',
      secrets: [`whpk_${raw.toString('base64')}`],
    });
    const body = '{"type":"ed"}';
    const msgId = `msg_${randomUUID()}`;
    const at = String(nowSeconds());
    const signature = sign(null, Buffer.from(`${msgId}.${at}.${body}`), privateKey).toString('base64');
    const headers = { 'webhook-id': msgId, 'webhook-timestamp': at, 'webhook-signature': `v1a,${signature}` };
    expect((await post(stack.httpUrl, `/webhooks/${edName}`, body, headers)).status).toBe(200);
    expect((await inboxRows(stack, id)).map((r) => r.external_id)).toEqual([msgId]);
  });
});

describe('stripe', () => {
  const secret = `whsec_${randomUUID().replaceAll('-', '')}`;
  const name = sourceName('stripe');
  let sourceId: string;
  beforeAll(async () => {
    sourceId = await createSource(stack, { name, kind: 'stripe', secrets: [secret] });
  });
  const signature = (payload: string, s = secret, timestamp = nowSeconds()) =>
    Stripe.webhooks.generateTestHeaderString({ payload, secret: s, timestamp });

  it('stores what the stripe library signs, under the event id and type', async () => {
    const id = `evt_${randomUUID().replaceAll('-', '')}`;
    const body = JSON.stringify({
      id,
      object: 'event',
      type: 'invoice.paid',
      data: { object: { amount: 2432 } },
    });
    const answer = await post(stack.httpUrl, `/webhooks/${name}`, body, {
      'stripe-signature': signature(body),
    });
    expect(answer.status).toBe(200);
    expect(answer.json.external_id).toBe(id);
    const [row] = await inboxRows(stack, sourceId);
    expect(row).toMatchObject({ external_id: id, event_type: 'invoice.paid' });
    expect(Object.keys(row!.headers).sort()).toEqual(['content-type', 'stripe-signature']);
    // Stripe resends the same event with a new signature: the same event.
    const again = await post(stack.httpUrl, `/webhooks/${name}`, body, {
      'stripe-signature': signature(body, secret, nowSeconds() - 10),
    });
    expect(again).toMatchObject({ status: 200, json: { id: answer.json.id, duplicate: true } });
  });

  it('refuses another secret, a stale timestamp, and a rotated-out secret', async () => {
    const body = JSON.stringify({ id: 'evt_forged', type: 'x' });
    const forged = await post(stack.httpUrl, `/webhooks/${name}`, body, {
      'stripe-signature': signature(body, 'whsec_other'),
    });
    expect(forged.status).toBe(401);
    const stale = await post(stack.httpUrl, `/webhooks/${name}`, body, {
      'stripe-signature': signature(body, secret, nowSeconds() - 600),
    });
    expect(stale.json.error.code).toBe('stale_timestamp');
    expect((await inboxRows(stack, sourceId)).some((r) => r.external_id === 'evt_forged')).toBe(false);
  });

  it('answers 400 for a signed body that is not JSON or has no id', async () => {
    const notJson = 'id=evt_1&type=x';
    const answer = await post(stack.httpUrl, `/webhooks/${name}`, notJson, {
      'stripe-signature': signature(notJson),
    });
    expect(answer.status).toBe(400);
    expect(answer.json.error.code).toBe('malformed_json');
    const noId = '{"type":"x"}';
    const missing = await post(stack.httpUrl, `/webhooks/${name}`, noId, {
      'stripe-signature': signature(noId),
    });
    expect(missing.status).toBe(400);
    expect(missing.json.error.code).toBe('missing_event_id');
  });
});

describe('github', () => {
  const secret = 'It is a secret to everybody';
  const name = sourceName('gh');
  let sourceId: string;
  beforeAll(async () => {
    sourceId = await createSource(stack, { name, kind: 'github', secrets: [secret] });
  });

  it('stores what @octokit/webhooks-methods signs under X-GitHub-Delivery, typed by X-GitHub-Event', async () => {
    const body = JSON.stringify({ action: 'opened', number: 1 });
    const delivery = randomUUID();
    const answer = await post(stack.httpUrl, `/webhooks/${name}`, body, {
      'x-hub-signature-256': await githubSign(secret, body),
      'x-github-delivery': delivery,
      'x-github-event': 'pull_request',
    });
    expect(answer.status).toBe(200);
    const [row] = await inboxRows(stack, sourceId);
    expect(row).toMatchObject({ external_id: delivery, event_type: 'pull_request' });
    expect(row!.headers['x-hub-signature-256']).toBeDefined();
  });

  it('refuses another secret; accepts a rotated one', async () => {
    const body = '{"zen":"Keep it logically awesome."}';
    const headers = async (s: string) => ({
      'x-hub-signature-256': await githubSign(s, body),
      'x-github-delivery': randomUUID(),
      'x-github-event': 'ping',
    });
    expect((await post(stack.httpUrl, `/webhooks/${name}`, body, await headers('wrong'))).status).toBe(401);
    await addSecret(stack, sourceId, 'the next secret');
    await eventually(
      async () =>
        (await post(stack.httpUrl, `/webhooks/${name}`, body, await headers('the next secret'))).status ===
        200,
      5_000,
    );
  });
});

describe('hmac', () => {
  const secret = 'hmac-secret-1';
  const name = sourceName('hmac');
  let sourceId: string;
  beforeAll(async () => {
    sourceId = await createSource(stack, {
      name,
      kind: 'hmac',
      secrets: [secret],
      settings: {
        hmac: { header: 'X-Signature', algorithm: 'sha512', encoding: 'base64', prefix: 'sha512=' },
        dedupe: { bodyPath: 'data.id' },
      },
    });
  });
  const sign = (body: string, s = secret) =>
    `sha512=${createHmac('sha512', s).update(body).digest('base64')}`;

  it('verifies the configured header and dedupes by a body path (big numbers keep their digits)', async () => {
    const body = '{"type":"thing.done","data":{"id":12345678901234567890123}}';
    const answer = await post(stack.httpUrl, `/webhooks/${name}`, body, { 'x-signature': sign(body) });
    expect(answer).toMatchObject({ status: 200, json: { external_id: '12345678901234567890123' } });
    // Another body with the same id is the same event.
    const other = '{"type":"thing.done","data":{"id":12345678901234567890123},"retry":1}';
    const again = await post(stack.httpUrl, `/webhooks/${name}`, other, { 'x-signature': sign(other) });
    expect(again).toMatchObject({ status: 200, json: { id: answer.json.id, duplicate: true } });
    const rows = await inboxRows(stack, sourceId);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.event_type).toBe('thing.done');
    expect(rows[0]!.headers['x-signature']).toBe(sign(body));
  });

  it('refuses a wrong signature (401) and a body without the id (400)', async () => {
    const body = '{"data":{"id":"a"}}';
    expect(
      (await post(stack.httpUrl, `/webhooks/${name}`, body, { 'x-signature': sign(body, 'x') })).status,
    ).toBe(401);
    const noId = '{"data":{}}';
    const answer = await post(stack.httpUrl, `/webhooks/${name}`, noId, { 'x-signature': sign(noId) });
    expect(answer.status).toBe(400);
    expect(answer.json.error).toMatchObject({
      code: 'missing_event_id',
      message: expect.stringContaining('data.id'),
    });
  });

  it('uses sha256 of the body as the id when the source names none', async () => {
    const plain = sourceName('hmacplain');
    const id = await createSource(stack, {
      name: plain,
      kind: 'hmac',
      secrets: ['s'],
      settings: { hmac: { header: 'x-sig', algorithm: 'sha256', encoding: 'hex', prefix: '' } },
    });
    const body = Buffer.from([0xff, 0x00, 0xfe]); // not UTF-8: bytes are stored as received
    const sig = createHmac('sha256', 's').update(body).digest('hex');
    const answer = await post(stack.httpUrl, `/webhooks/${plain}`, body, {
      'x-sig': sig,
      'content-type': 'application/octet-stream',
    });
    expect(answer.status).toBe(200);
    const [row] = await inboxRows(stack, id);
    expect(row!.body.equals(body)).toBe(true);
    expect(row!.external_id).toMatch(/^sha256:[0-9a-f]{64}$/);
  });
});

describe('supabase-database authentication', () => {
  it('accepts the shared secret header (compared in constant time) and never stores it', async () => {
    const name = sourceName('supa');
    const id = await createSource(stack, {
      name,
      kind: 'supabase-database',
      secrets: ['shared-secret-value'],
    });
    const body = JSON.stringify({
      type: 'INSERT',
      schema: 'public',
      table: 'notes',
      record: {},
      old_record: null,
    });
    // The catalog may not hold public.notes; authentication is checked first either way.
    const wrong = await post(stack.httpUrl, `/webhooks/${name}`, body, { 'x-webhook-secret': 'nope' });
    expect(wrong.status).toBe(401);
    const missing = await post(stack.httpUrl, `/webhooks/${name}`, body);
    expect(missing.json.error.code).toBe('missing_signature');
    const right = await post(stack.httpUrl, `/webhooks/${name}`, body, {
      'x-webhook-secret': 'shared-secret-value',
    });
    expect([200, 422]).toContain(right.status);
    for (const row of await inboxRows(stack, id)) expect(row.headers['x-webhook-secret']).toBeUndefined();
  });
});

describe('refusals', () => {
  it('404 for an unknown, disabled or operational source and for other paths; 405 for other methods', async () => {
    const disabled = sourceName('off');
    await createSource(stack, {
      name: disabled,
      kind: 'standard-webhooks',
      enabled: false,
      secrets: [newSecret()],
    });
    for (const path of [
      '/webhooks/nope-not-here',
      `/webhooks/${disabled}`,
      '/webhooks/sluice-operational',
      '/webhooks/Bad%20Name',
    ]) {
      const answer = await post(stack.httpUrl, path, '{}');
      expect(answer.status, path).toBe(404);
      expect(answer.json.error.code, path).toBe('unknown_source');
    }
    const other = await post(stack.httpUrl, '/other', '{}');
    expect(other).toMatchObject({ status: 404, json: { error: { code: 'not_found' } } });
    const get = await post(stack.httpUrl, `/webhooks/${disabled}`, '', {}, 'GET');
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST');
    expect(get.json.error.code).toBe('method_not_allowed');
  });

  /** A Standard Webhooks source limited to 2 requests/s (burst 4), and its secret. */
  const sourceAtTwoPerSecond = async (prefix: string) => {
    const name = sourceName(prefix);
    const secret = newSecret();
    await createSource(stack, {
      name,
      kind: 'standard-webhooks',
      secrets: [secret],
      settings: { ratePerSecond: 2 },
    });
    return { name, secret };
  };

  it('429 with Retry-After past the per-source burst (twice the rate)', async () => {
    const { name, secret } = await sourceAtTwoPerSecond('slow');
    const started = Date.now();
    // One at a time: each verified request is charged before the next is looked at.
    const statuses: number[] = [];
    let limited: Awaited<ReturnType<typeof post>> | undefined;
    for (let i = 0; i < 8; i++) {
      const body = `{"i":${i}}`;
      const answer = await post(stack.httpUrl, `/webhooks/${name}`, body, standardHeaders(secret, body));
      statuses.push(answer.status);
      if (answer.status === 429) limited ??= answer;
    }
    // Tokens that came back while the requests were being sent (a slow machine spreads them).
    const refilled = Math.ceil(((Date.now() - started) / 1000) * 2);
    const passed = statuses.filter((s) => s === 200).length;
    expect(passed).toBeGreaterThanOrEqual(4);
    expect(passed).toBeLessThanOrEqual(4 + refilled);
    expect(statuses.filter((s) => s === 429)).toHaveLength(8 - passed);
    expect(Number(limited?.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(limited?.json.error.code).toBe('rate_limited');
  });

  it('charges only verified requests: a flood of forged ones leaves the budget to the sender', async () => {
    const { name, secret } = await sourceAtTwoPerSecond('flood');
    // Anyone knowing the name: unsigned, and signed with another secret, 40 of them at once.
    const forged = await Promise.all(
      Array.from({ length: 40 }, (_, i) => {
        const body = `{"forged":${i}}`;
        return post(
          stack.httpUrl,
          `/webhooks/${name}`,
          body,
          i % 2 ? standardHeaders(newSecret(), body) : {},
        );
      }),
    );
    expect(forged.every((a) => a.status === 401)).toBe(true);
    // The sender's burst (4) is all there.
    for (let i = 0; i < 4; i++) {
      const body = `{"real":${i}}`;
      const answer = await post(stack.httpUrl, `/webhooks/${name}`, body, standardHeaders(secret, body));
      expect(answer.status, `real ${i}`).toBe(200);
    }
  });
});

describe('dedupe by a configured header', () => {
  it('uses the header the source names over the scheme id, and refuses a request without it', async () => {
    const name = sourceName('hdr');
    const id = await createSource(stack, {
      name,
      kind: 'github',
      secrets: ['gh'],
      settings: { dedupe: { header: 'X-Request-Id' } },
    });
    const body = '{"action":"x"}';
    const headers = async (requestId?: string) => ({
      'x-hub-signature-256': await githubSign('gh', body),
      'x-github-delivery': randomUUID(),
      ...(requestId ? { 'x-request-id': requestId } : {}),
    });
    const first = await post(stack.httpUrl, `/webhooks/${name}`, body, await headers('req-1'));
    expect(first).toMatchObject({ status: 200, json: { external_id: 'req-1', duplicate: false } });
    const second = await post(stack.httpUrl, `/webhooks/${name}`, body, await headers('req-1'));
    expect(second).toMatchObject({ status: 200, json: { id: first.json.id, duplicate: true } });
    const missing = await post(stack.httpUrl, `/webhooks/${name}`, body, await headers());
    expect(missing.status).toBe(400);
    expect(missing.json.error.code).toBe('missing_event_id');
    const rows = await inboxRows(stack, id);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.headers['x-request-id']).toBe('req-1');
  });
});
