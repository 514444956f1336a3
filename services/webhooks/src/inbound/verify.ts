import { createHmac, createPublicKey, type KeyObject, timingSafeEqual, verify } from 'node:crypto';

/**
 * Signature verification of inbound webhooks, on the exact bytes received and in constant time.
 * Written on node:crypto rather than with the schemes' own libraries, which each fall short for
 * an ingress: `standardwebhooks` and `stripe` verify the body decoded as UTF-8 (not the bytes
 * signed), neither supports several tolerances or ed25519 `v1a`, Stripe's timestamp check is
 * one-sided, and `@octokit/webhooks-methods` takes strings only. The tests cross-check every
 * scheme against those libraries' signatures (docs/research/webhooks.md).
 */

/** Headers as Node gives them: lower-case names. */
export type Headers = Readonly<Record<string, string | string[] | undefined>>;

export type VerifyFailure =
  /** The signature header (or a part the scheme needs, like its timestamp or id) is absent. */
  | 'missing_signature'
  /** Present but not in the scheme's format. */
  | 'malformed_signature'
  /** Outside the tolerance around now, either way. */
  | 'stale_timestamp'
  /** No signature matches any of the source's secrets. */
  | 'bad_signature';

export type VerifyResult =
  | {
      readonly ok: true;
      /** The scheme's event id when the scheme carries one in headers (webhook-id, X-GitHub-Delivery). */
      readonly eventId?: string;
      /** The signed timestamp, in seconds, when the scheme has one. */
      readonly timestamp?: number;
    }
  | { readonly ok: false; readonly failure: VerifyFailure };

export interface VerifyRequest {
  /** The body exactly as received. */
  readonly body: Buffer;
  readonly headers: Headers;
  /** Now, in milliseconds since the epoch (injected so tolerance is testable). */
  readonly now: number;
}

/** Standard Webhooks (Svix, Supabase auth hooks, …): `v1` HMAC-SHA256 and `v1a` ed25519. */
export interface StandardWebhooksScheme {
  readonly kind: 'standard-webhooks';
  /** `whsec_<base64>` (HMAC keys) and/or `whpk_<base64>` (ed25519 public keys); several during rotation. */
  readonly secrets: readonly string[];
  readonly toleranceSeconds: number;
}

/** Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]`, HMAC-SHA256 of `t.body` keyed by the secret's text. */
export interface StripeScheme {
  readonly kind: 'stripe';
  readonly secrets: readonly string[];
  readonly toleranceSeconds: number;
}

/** GitHub: `X-Hub-Signature-256: sha256=<hex>` over the body; the delivery id in `X-GitHub-Delivery`. */
export interface GithubScheme {
  readonly kind: 'github';
  readonly secrets: readonly string[];
}

/** A configurable HMAC over the body: header name, algorithm, encoding and an optional prefix. */
export interface HmacScheme {
  readonly kind: 'hmac';
  readonly secrets: readonly string[];
  /** Lower-case header name, e.g. `x-signature`. */
  readonly header: string;
  readonly algorithm: 'sha1' | 'sha256' | 'sha512';
  readonly encoding: 'hex' | 'base64';
  /** Text before the signature in the header, e.g. `sha256=`. */
  readonly prefix: string;
}

export type Scheme = StandardWebhooksScheme | StripeScheme | GithubScheme | HmacScheme;

/** Checks `request` against `scheme`; never throws for bad input. */
export function verifySignature(scheme: Scheme, request: VerifyRequest): VerifyResult {
  switch (scheme.kind) {
    case 'standard-webhooks':
      return verifyStandardWebhooks(scheme, request);
    case 'stripe':
      return verifyStripe(scheme, request);
    case 'github':
      return verifyGithub(scheme, request);
    case 'hmac':
      return verifyHmac(scheme, request);
  }
}

const fail = (failure: VerifyFailure): VerifyResult => ({ ok: false, failure });

function header(headers: Headers, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** Equal in constant time for equal lengths; different lengths are unequal at once (length is not secret). */
function sameBytes(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

function hmac(algorithm: string, key: Buffer | string, ...parts: (Buffer | string)[]): Buffer {
  const mac = createHmac(algorithm, key);
  for (const part of parts) mac.update(part);
  return mac.digest();
}

const DIGITS = /^\d{1,12}$/;

/** Signatures checked in one Standard Webhooks header at most; more is refused as malformed. */
const MAX_SIGNATURES = 16;

function withinTolerance(timestamp: number, now: number, toleranceSeconds: number): boolean {
  return Math.abs(now / 1000 - timestamp) <= toleranceSeconds;
}

function verifyStandardWebhooks(
  scheme: StandardWebhooksScheme,
  { body, headers, now }: VerifyRequest,
): VerifyResult {
  const id = header(headers, 'webhook-id');
  const timestampText = header(headers, 'webhook-timestamp');
  const signatures = header(headers, 'webhook-signature');
  if (!id || !timestampText || !signatures) return fail('missing_signature');
  // The signed content is `id.timestamp.body`: a dot inside either would make it ambiguous.
  if (id.includes('.') || !DIGITS.test(timestampText)) return fail('malformed_signature');
  const timestamp = Number(timestampText);
  if (!withinTolerance(timestamp, now, scheme.toleranceSeconds)) return fail('stale_timestamp');
  // The header is the sender's: thousands of entries fit in it, and each would cost a pass over
  // the body. Senders send one per secret they sign with (a few during a rotation).
  const entries = signatures.split(' ').filter((entry) => entry !== '');
  if (entries.length > MAX_SIGNATURES) return fail('malformed_signature');
  const signed = Buffer.concat([Buffer.from(`${id}.${timestampText}.`), body]);
  // Each HMAC key's digest is computed once, whatever the number of entries.
  const keys = scheme.secrets.map(standardWebhooksKey);
  const digests = keys.map((key) => (key.kind === 'hmac' ? hmac('sha256', key.key, signed) : undefined));
  for (const entry of entries) {
    const comma = entry.indexOf(',');
    if (comma < 0) continue;
    const version = entry.slice(0, comma);
    const signature = Buffer.from(entry.slice(comma + 1), 'base64');
    for (const [i, key] of keys.entries()) {
      const digest = digests[i];
      if (version === 'v1' && digest && sameBytes(digest, signature))
        return { ok: true, eventId: id, timestamp };
      if (
        version === 'v1a' &&
        key.kind === 'ed25519' &&
        signature.length === 64 &&
        verify(null, signed, key.key, signature)
      )
        return { ok: true, eventId: id, timestamp };
    }
  }
  return fail('bad_signature');
}

type StandardKey = { kind: 'hmac'; key: Buffer } | { kind: 'ed25519'; key: KeyObject } | { kind: 'none' };

/** `whsec_<b64>`: an HMAC key; `whpk_<b64>`: a 32-byte ed25519 public key; a bare value: HMAC key in base64. */
function standardWebhooksKey(secret: string): StandardKey {
  // Supabase shows secrets as `v1,whsec_…`: the version prefix is not part of the key.
  const text = secret.startsWith('v1,') ? secret.slice(3) : secret;
  if (text.startsWith('whpk_')) {
    const raw = Buffer.from(text.slice(5), 'base64');
    if (raw.length !== 32) return { kind: 'none' };
    return {
      kind: 'ed25519',
      key: createPublicKey({
        key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') },
        format: 'jwk',
      }),
    };
  }
  // Node's base64 decoder skips what is not base64: a secret of another form (a shared secret
  // left from another auth mode) could decode to a short or empty key anyone can sign with.
  const base64 = text.startsWith('whsec_') ? text.slice(6) : text;
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) return { kind: 'none' };
  const key = Buffer.from(base64, 'base64');
  return key.length >= MIN_HMAC_KEY_BYTES ? { kind: 'hmac', key } : { kind: 'none' };
}

/** The shortest Standard Webhooks HMAC key used (the admin API takes 16 bytes and more). */
const MIN_HMAC_KEY_BYTES = 16;

function verifyStripe(scheme: StripeScheme, { body, headers, now }: VerifyRequest): VerifyResult {
  const value = header(headers, 'stripe-signature');
  if (!value) return fail('missing_signature');
  let timestampText: string | undefined;
  const signatures: Buffer[] = [];
  for (const item of value.split(',')) {
    const eq = item.indexOf('=');
    if (eq < 0) return fail('malformed_signature');
    const key = item.slice(0, eq).trim();
    const part = item.slice(eq + 1).trim();
    if (key === 't') timestampText = part;
    // Other schemes (v0, test-mode entries) are not signatures Sluice checks.
    else if (key === 'v1' && /^[\da-f]+$/i.test(part)) signatures.push(Buffer.from(part, 'hex'));
  }
  if (!timestampText || !DIGITS.test(timestampText)) return fail('malformed_signature');
  if (signatures.length === 0) return fail('missing_signature');
  const timestamp = Number(timestampText);
  // Both ways: Stripe's own library accepts any future timestamp.
  if (!withinTolerance(timestamp, now, scheme.toleranceSeconds)) return fail('stale_timestamp');
  for (const secret of scheme.secrets) {
    // Stripe keys the HMAC with the secret's text, `whsec_` included.
    const expected = hmac('sha256', secret, `${timestampText}.`, body);
    if (signatures.some((s) => sameBytes(expected, s))) return { ok: true, timestamp };
  }
  return fail('bad_signature');
}

function verifyGithub(scheme: GithubScheme, { body, headers }: VerifyRequest): VerifyResult {
  const result = verifyHmac(
    {
      kind: 'hmac',
      secrets: scheme.secrets,
      header: 'x-hub-signature-256',
      algorithm: 'sha256',
      encoding: 'hex',
      prefix: 'sha256=',
    },
    { body, headers, now: 0 },
  );
  const delivery = header(headers, 'x-github-delivery');
  return result.ok && delivery ? { ok: true, eventId: delivery } : result;
}

function verifyHmac(scheme: HmacScheme, { body, headers }: VerifyRequest): VerifyResult {
  const value = header(headers, scheme.header)?.trim();
  if (!value) return fail('missing_signature');
  if (!value.startsWith(scheme.prefix)) return fail('malformed_signature');
  const text = value.slice(scheme.prefix.length);
  const valid = scheme.encoding === 'hex' ? /^[\da-f]+$/i.test(text) : /^[A-Za-z\d+/]+={0,2}$/.test(text);
  if (!valid) return fail('malformed_signature');
  const signature = Buffer.from(text, scheme.encoding);
  for (const secret of scheme.secrets) {
    if (sameBytes(hmac(scheme.algorithm, secret, body), signature)) return { ok: true };
  }
  return fail('bad_signature');
}
