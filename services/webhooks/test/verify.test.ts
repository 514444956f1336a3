import { createHmac, randomBytes } from 'node:crypto';
import { sign as githubSign } from '@octokit/webhooks-methods';
import { Webhook } from 'standardwebhooks';
import Stripe from 'stripe';
import { describe, expect, it } from 'vitest';
import { type Scheme, verifySignature } from '../src/inbound/verify';

// Every scheme is checked against signatures made by the scheme's own library (standardwebhooks,
// stripe, @octokit/webhooks-methods) or, for ed25519, Svix's published test vector; then the
// cases an ingress meets: tampered bodies, other secrets, rotation, stale and future timestamps,
// bytes that are not UTF-8, and headers in any broken shape (never a throw).

const NOW = Date.UTC(2026, 10, 27, 12, 0, 0);
const nowSeconds = Math.floor(NOW / 1000);
const body = Buffer.from('{"type":"invoice.paid","id":"evt_1","amount":2432232314}');

describe('standard-webhooks', () => {
  const secret = `whsec_${randomBytes(32).toString('base64')}`;
  const scheme: Scheme = { kind: 'standard-webhooks', secrets: [secret], toleranceSeconds: 300 };
  const signed = (payload: Buffer | string, s = secret, at = nowSeconds, id = 'msg_1') => ({
    'webhook-id': id,
    'webhook-timestamp': String(at),
    'webhook-signature': new Webhook(s).sign(id, new Date(at * 1000), payload.toString()),
  });

  it('accepts what the standardwebhooks library signs, and returns the message id', () => {
    expect(verifySignature(scheme, { body, headers: signed(body), now: NOW })).toEqual({
      ok: true,
      eventId: 'msg_1',
      timestamp: nowSeconds,
    });
  });

  it('refuses a changed body, another secret, and a changed id', () => {
    const headers = signed(body);
    expect(verifySignature(scheme, { body: Buffer.from(`${body} `), headers, now: NOW })).toEqual({
      ok: false,
      failure: 'bad_signature',
    });
    const other = `whsec_${randomBytes(32).toString('base64')}`;
    expect(verifySignature(scheme, { body, headers: signed(body, other), now: NOW }).ok).toBe(false);
    expect(
      verifySignature(scheme, { body, headers: { ...headers, 'webhook-id': 'msg_2' }, now: NOW }).ok,
    ).toBe(false);
  });

  it('accepts any of several secrets (rotation) and any of several signatures', () => {
    const old = `whsec_${randomBytes(32).toString('base64')}`;
    const rotating: Scheme = { kind: 'standard-webhooks', secrets: [secret, old], toleranceSeconds: 300 };
    expect(verifySignature(rotating, { body, headers: signed(body, old), now: NOW }).ok).toBe(true);
    const headers = signed(body);
    const both = {
      ...headers,
      'webhook-signature': `v1,${Buffer.alloc(32).toString('base64')} ${headers['webhook-signature']}`,
    };
    expect(verifySignature(scheme, { body, headers: both, now: NOW }).ok).toBe(true);
  });

  it('refuses timestamps outside the tolerance, in the past and in the future', () => {
    for (const at of [nowSeconds - 301, nowSeconds + 301]) {
      expect(verifySignature(scheme, { body, headers: signed(body, secret, at), now: NOW })).toEqual({
        ok: false,
        failure: 'stale_timestamp',
      });
    }
    expect(
      verifySignature(scheme, { body, headers: signed(body, secret, nowSeconds - 299), now: NOW }).ok,
    ).toBe(true);
  });

  it('verifies the exact bytes: a body that is not UTF-8 is checked as received', () => {
    const raw = Buffer.from([0x7b, 0xff, 0x7d]);
    const key = Buffer.from(secret.slice(6), 'base64');
    const over = (content: Buffer) =>
      createHmac('sha256', key).update(`msg_1.${nowSeconds}.`).update(content).digest('base64');
    const headers = { 'webhook-id': 'msg_1', 'webhook-timestamp': String(nowSeconds) };
    expect(
      verifySignature(scheme, {
        body: raw,
        headers: { ...headers, 'webhook-signature': `v1,${over(raw)}` },
        now: NOW,
      }).ok,
    ).toBe(true);
    // What a library decoding the body as UTF-8 signs (U+FFFD for the bad byte) is not this body's signature.
    const decoded = Buffer.from(raw.toString('utf8'));
    expect(
      verifySignature(scheme, {
        body: raw,
        headers: { ...headers, 'webhook-signature': `v1,${over(decoded)}` },
        now: NOW,
      }).ok,
    ).toBe(false);
  });

  it('v1a: ed25519, Svix’s published test vector', () => {
    const sk = Buffer.from(
      '6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRqSKJp4AJ6p9lMicMFs6Kvg==',
      'base64',
    );
    const publicKey = `whpk_${sk.subarray(32).toString('base64')}`;
    const ed: Scheme = { kind: 'standard-webhooks', secrets: [publicKey], toleranceSeconds: 300 };
    const headers = {
      'webhook-id': 'msg_p5jXN8AQM9LWM0D4loKWxJek',
      'webhook-timestamp': '1614265330',
      'webhook-signature':
        'v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg==',
    };
    const at = 1614265330 * 1000;
    expect(verifySignature(ed, { body: Buffer.from('{"test": 2432232314}'), headers, now: at }).ok).toBe(
      true,
    );
    expect(verifySignature(ed, { body: Buffer.from('{"test": 2432232315}'), headers, now: at }).ok).toBe(
      false,
    );
    // An HMAC secret never verifies a v1a signature, nor a public key a v1 one.
    expect(verifySignature(scheme, { body: Buffer.from('{"test": 2432232314}'), headers, now: at }).ok).toBe(
      false,
    );
  });

  it('accepts a Supabase-style `v1,whsec_…` secret', () => {
    const supabase: Scheme = { kind: 'standard-webhooks', secrets: [`v1,${secret}`], toleranceSeconds: 300 };
    expect(verifySignature(supabase, { body, headers: signed(body), now: NOW }).ok).toBe(true);
  });

  it('missing or malformed headers are failures, never throws', () => {
    const headers = signed(body);
    const cases: [Record<string, string | undefined>, string][] = [
      [{ ...headers, 'webhook-signature': undefined }, 'missing_signature'],
      [{ ...headers, 'webhook-id': undefined }, 'missing_signature'],
      [{ ...headers, 'webhook-timestamp': 'yesterday' }, 'malformed_signature'],
      [{ ...headers, 'webhook-id': 'a.b' }, 'malformed_signature'],
      [{ ...headers, 'webhook-signature': 'garbage' }, 'bad_signature'],
      [{ ...headers, 'webhook-signature': 'v1,%%%' }, 'bad_signature'],
      [{ ...headers, 'webhook-signature': 'v1a,AAAA' }, 'bad_signature'],
    ];
    for (const [h, failure] of cases)
      expect(verifySignature(scheme, { body, headers: h, now: NOW })).toEqual({ ok: false, failure });
  });
});

describe('stripe', () => {
  const secret = `whsec_${randomBytes(24).toString('hex')}`;
  const scheme: Scheme = { kind: 'stripe', secrets: [secret], toleranceSeconds: 300 };
  const header = (s = secret, timestamp = nowSeconds) =>
    Stripe.webhooks.generateTestHeaderString({ payload: body.toString(), secret: s, timestamp });

  it('accepts what the stripe library signs; refuses another secret and a changed body', () => {
    expect(verifySignature(scheme, { body, headers: { 'stripe-signature': header() }, now: NOW })).toEqual({
      ok: true,
      timestamp: nowSeconds,
    });
    expect(
      verifySignature(scheme, { body, headers: { 'stripe-signature': header('whsec_other') }, now: NOW }).ok,
    ).toBe(false);
    expect(
      verifySignature(scheme, {
        body: Buffer.from('{}'),
        headers: { 'stripe-signature': header() },
        now: NOW,
      }).ok,
    ).toBe(false);
  });

  it('refuses a timestamp an hour ahead, which the stripe library itself accepts', () => {
    const ahead = header(secret, nowSeconds + 3600);
    expect(() =>
      Stripe.webhooks.constructEvent(body.toString(), ahead, secret, 300, undefined, nowSeconds),
    ).not.toThrow();
    expect(verifySignature(scheme, { body, headers: { 'stripe-signature': ahead }, now: NOW })).toEqual({
      ok: false,
      failure: 'stale_timestamp',
    });
  });

  it('accepts any v1 entry (secrets rolled), ignores other schemes, and reports malformed headers', () => {
    const old = `whsec_${randomBytes(24).toString('hex')}`;
    const rolled: Scheme = { kind: 'stripe', secrets: [old, secret], toleranceSeconds: 300 };
    const v1 = header().split(',')[1];
    const combined = `t=${nowSeconds},v0=abc,v1=${'0'.repeat(64)},${v1}`;
    expect(verifySignature(rolled, { body, headers: { 'stripe-signature': combined }, now: NOW }).ok).toBe(
      true,
    );
    expect(verifySignature(scheme, { body, headers: { 'stripe-signature': 'nonsense' }, now: NOW }).ok).toBe(
      false,
    );
    expect(
      verifySignature(scheme, { body, headers: { 'stripe-signature': `t=${nowSeconds}` }, now: NOW }),
    ).toEqual({
      ok: false,
      failure: 'missing_signature',
    });
    expect(verifySignature(scheme, { body, headers: {}, now: NOW })).toEqual({
      ok: false,
      failure: 'missing_signature',
    });
  });
});

describe('github', () => {
  const secret = randomBytes(20).toString('hex');
  const scheme: Scheme = { kind: 'github', secrets: [secret] };

  it('accepts what @octokit/webhooks-methods signs, with the delivery id; refuses another secret', async () => {
    const headers = {
      'x-hub-signature-256': await githubSign(secret, body.toString()),
      'x-github-delivery': 'd-1',
    };
    expect(verifySignature(scheme, { body, headers, now: NOW })).toEqual({ ok: true, eventId: 'd-1' });
    const other = { ...headers, 'x-hub-signature-256': await githubSign('other', body.toString()) };
    expect(verifySignature(scheme, { body, headers: other, now: NOW })).toEqual({
      ok: false,
      failure: 'bad_signature',
    });
    expect(
      verifySignature(scheme, { body, headers: { 'x-hub-signature-256': 'sha1=abc' }, now: NOW }),
    ).toEqual({
      ok: false,
      failure: 'malformed_signature',
    });
  });
});

describe('hmac (configurable)', () => {
  it('checks the configured header, algorithm, encoding and prefix', () => {
    const secret = randomBytes(16).toString('hex');
    const scheme: Scheme = {
      kind: 'hmac',
      secrets: [secret],
      header: 'x-signature',
      algorithm: 'sha512',
      encoding: 'base64',
      prefix: 'v=',
    };
    const good = `v=${createHmac('sha512', secret).update(body).digest('base64')}`;
    expect(verifySignature(scheme, { body, headers: { 'x-signature': good }, now: NOW })).toEqual({
      ok: true,
    });
    const sha256 = `v=${createHmac('sha256', secret).update(body).digest('base64')}`;
    expect(verifySignature(scheme, { body, headers: { 'x-signature': sha256 }, now: NOW }).ok).toBe(false);
    expect(verifySignature(scheme, { body, headers: { 'x-signature': good.slice(2) }, now: NOW })).toEqual({
      ok: false,
      failure: 'malformed_signature',
    });
  });
});
