import { createHmac, generateKeyPairSync, randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { verifySignature } from '../src/inbound/verify';

// Outside review: what an unauthenticated sender can make the verifier spend. The signature
// header is the attacker's; only the timestamp has to be current, which needs no secret.

const secret = `whsec_${randomBytes(32).toString('base64')}`;
const body = Buffer.alloc(4 * 1024 * 1024, 'a');
const now = Date.now();
const timestamp = String(Math.floor(now / 1000));

function timed(signatures: string, secrets: readonly string[]) {
  const started = performance.now();
  const result = verifySignature(
    { kind: 'standard-webhooks', secrets, toleranceSeconds: 300 },
    {
      body,
      headers: { 'webhook-id': 'msg_x', 'webhook-timestamp': timestamp, 'webhook-signature': signatures },
      now,
    },
  );
  return { result, ms: performance.now() - started };
}

describe('standard-webhooks signature header of many entries', () => {
  it('costs one HMAC of the body per secret, not one per entry (thousands fit in 16 KB of headers)', () => {
    // 3,000 bogus v1 entries: before, each one hashed the 4 MiB body again (12 GB, seconds of CPU).
    const { result, ms } = timed(Array(3000).fill('v1,x').join(' '), [secret]);
    expect(result).toEqual({ ok: false, failure: 'malformed_signature' });
    expect(ms).toBeLessThan(1000);
  });

  it('checks a bounded number of ed25519 (v1a) entries, each of which hashes the body', () => {
    const { publicKey } = generateKeyPairSync('ed25519');
    const raw = publicKey.export({ format: 'jwk' }).x as string;
    const pk = `whpk_${Buffer.from(raw, 'base64url').toString('base64')}`;
    const bogus = `v1a,${randomBytes(64).toString('base64')}`;
    const { result, ms } = timed(Array(170).fill(bogus).join(' '), [pk]);
    expect(result.ok).toBe(false);
    expect(ms).toBeLessThan(1000);
  });

  it('still accepts a valid signature among a few others (rotation)', () => {
    const small = Buffer.from('{"type":"ok"}');
    const at = new Date(now);
    const other = `whsec_${randomBytes(32).toString('base64')}`;
    const signatures = [
      new Webhook(other).sign('msg_x', at, small.toString()),
      'v1,bm90IGEgc2lnbmF0dXJl',
      new Webhook(secret).sign('msg_x', at, small.toString()),
    ].join(' ');
    const result = verifySignature(
      { kind: 'standard-webhooks', secrets: [secret], toleranceSeconds: 300 },
      {
        body: small,
        headers: { 'webhook-id': 'msg_x', 'webhook-timestamp': timestamp, 'webhook-signature': signatures },
        now,
      },
    );
    expect(result).toEqual({ ok: true, eventId: 'msg_x', timestamp: Number(timestamp) });
  });
});

describe('standard-webhooks keys', () => {
  const sign = (key: Buffer, body: string) =>
    `v1,${createHmac('sha256', key).update(`msg_k.${timestamp}.${body}`).digest('base64')}`;
  const check = (secret: string, signature: string, body: string) =>
    verifySignature(
      { kind: 'standard-webhooks', secrets: [secret], toleranceSeconds: 300 },
      {
        body: Buffer.from(body),
        headers: { 'webhook-id': 'msg_k', 'webhook-timestamp': timestamp, 'webhook-signature': signature },
        now,
      },
    ).ok;

  it('a secret that is not base64 (a shared secret kept after UpdateSource changed the auth) signs nothing', () => {
    // Node decodes "!!!…" to an empty key and "my-shared-token" to 11 bytes: anyone could sign.
    expect(check('!!!!!!!!!!!!!!!!', sign(Buffer.alloc(0), '{}'), '{}')).toBe(false);
    expect(check('whsec_!!!!!!!!', sign(Buffer.alloc(0), '{}'), '{}')).toBe(false);
    expect(check('my-shared-token', sign(Buffer.from('my-shared-token', 'base64'), '{}'), '{}')).toBe(false);
    expect(check('whsec_AAAA', sign(Buffer.from('AAAA', 'base64'), '{}'), '{}')).toBe(false);
  });

  it('takes bare base64 keys of 16 bytes and more', () => {
    const key = randomBytes(16);
    expect(check(key.toString('base64'), sign(key, '{}'), '{}')).toBe(true);
    expect(check(`v1,whsec_${key.toString('base64')}`, sign(key, '{}'), '{}')).toBe(true);
  });
});
