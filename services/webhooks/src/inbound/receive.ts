import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import type { SchemaCatalog } from '@sluice/db';
import { parseTraceparent } from '@sluice/observability';
import { DEFAULT_SUPABASE } from '../stored-settings';
import { IngressError } from './errors';
import { isJsonObject, isRawNumber, parseExactJson } from './exact-json';
import type { InboundSource } from './sources';
import { ChangeMisfit, readSupabaseChange, type StoredChange, storedChange } from './supabase-change';
import { type Headers, type Scheme, type VerifyResult, verifySignature } from './verify';

/**
 * What the ingress makes of one request to a known source, before storing it: the signature
 * checked on the exact bytes, then the event's id (the dedupe key), its type, the headers worth
 * keeping and, for supabase-database, the change as validated against the schema catalog.
 * Pure apart from the clock passed in; throws IngressError for every refusal.
 */

export interface ReceivedEvent {
  readonly externalId: string;
  readonly eventType: string | null;
  /** Lower-case names; several values of one header joined with ", ". */
  readonly headers: Readonly<Record<string, string>>;
  readonly change: StoredChange | null;
  /** The sender's W3C traceparent when it sent a valid one. */
  readonly traceparent: string | null;
}

export interface ReceiveOptions {
  readonly source: InboundSource;
  /** The body exactly as received. */
  readonly body: Buffer;
  readonly headers: Headers;
  readonly catalog: () => SchemaCatalog;
}

/** The longest event id accepted (ids are stored and indexed). */
const MAX_EXTERNAL_ID = 512;

/** Headers each scheme signs with or names its event by. */
const SCHEME_HEADERS: Readonly<Record<string, readonly string[]>> = {
  'standard-webhooks': ['webhook-id', 'webhook-timestamp', 'webhook-signature'],
  stripe: ['stripe-signature'],
  github: [
    'x-github-delivery',
    'x-github-event',
    'x-hub-signature-256',
    'x-github-hook-id',
    'x-github-hook-installation-target-type',
    'x-github-hook-installation-target-id',
  ],
};

const ALWAYS_KEPT = ['content-type', 'traceparent'];

/**
 * Verifies the request's signature against the source's secrets.
 *
 * @throws IngressError source_misconfigured for an hmac source without its settings.
 */
export function verifyRequest(
  source: InboundSource,
  body: Buffer,
  headers: Headers,
  now: number,
  toleranceSeconds: number,
): VerifyResult {
  const tolerance = source.settings.toleranceSeconds ?? toleranceSeconds;
  const secrets = source.secrets;
  let scheme: Scheme;
  switch (source.kind) {
    case 'standard-webhooks':
    case 'stripe':
      scheme = { kind: source.kind, secrets, toleranceSeconds: tolerance };
      break;
    case 'github':
      scheme = { kind: 'github', secrets };
      break;
    case 'hmac': {
      const hmac = source.settings.hmac;
      if (!hmac)
        throw new IngressError('source_misconfigured', `source "${source.name}" has no hmac settings`);
      scheme = { kind: 'hmac', secrets, ...hmac };
      break;
    }
    case 'supabase-database': {
      const supabase = source.settings.supabase ?? DEFAULT_SUPABASE;
      if (supabase.auth === 'shared-secret')
        return verifySharedSecret(secrets, headerText(headers, supabase.header));
      scheme = { kind: 'standard-webhooks', secrets, toleranceSeconds: tolerance };
      break;
    }
  }
  return verifySignature(scheme, { body, headers, now });
}

/** A shared secret compared in constant time: both sides hashed first, so lengths do not show. */
function verifySharedSecret(secrets: readonly string[], given: string | undefined): VerifyResult {
  if (!given) return { ok: false, failure: 'missing_signature' };
  const digest = (s: string) => createHash('sha256').update(s).digest();
  const givenDigest = digest(given);
  let match = false;
  for (const secret of secrets) match = timingSafeEqual(digest(secret), givenDigest) || match;
  return match ? { ok: true } : { ok: false, failure: 'bad_signature' };
}

function headerText(headers: Headers, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}

/**
 * Everything after a valid signature: the event's id, type, kept headers and change.
 *
 * @throws IngressError malformed_json (400) when the kind needs JSON and the body is not,
 *   missing_event_id (400) when the id the source names is absent or too long, invalid_change
 *   (422, with the field) for a supabase-database payload that does not fit the catalog.
 */
export function describeEvent(
  { source, body, headers, catalog }: ReceiveOptions,
  verified: { readonly eventId?: string },
): ReceivedEvent {
  let parsed: { value: unknown } | undefined;
  /** The body as exact JSON, or undefined when it is not JSON. */
  const json = (): unknown => {
    if (!parsed) {
      try {
        parsed = { value: parseExactJson(body.toString('utf8')) };
      } catch {
        parsed = { value: undefined };
      }
    }
    return parsed.value;
  };
  const needJson = (): Record<string, unknown> => {
    const value = json();
    if (value === undefined) throw new IngressError('malformed_json', 'the body is not valid JSON');
    if (!isJsonObject(value)) throw new IngressError('malformed_json', 'the body must be a JSON object');
    return value;
  };

  let eventType: string | null = null;
  let change: StoredChange | null = null;
  let schemeId = verified.eventId;
  switch (source.kind) {
    case 'stripe': {
      const event = needJson();
      if (typeof event.id === 'string') schemeId = event.id;
      if (typeof event.type === 'string') eventType = event.type;
      break;
    }
    case 'github':
      eventType = headerText(headers, 'x-github-event') ?? null;
      break;
    case 'supabase-database': {
      const payload = needJson();
      try {
        change = storedChange(readSupabaseChange(catalog(), payload));
      } catch (error) {
        if (error instanceof ChangeMisfit)
          throw new IngressError('invalid_change', error.message, { field: error.field });
        throw error;
      }
      eventType = change.operation;
      break;
    }
    default: {
      // A JSON body's "type" (Standard Webhooks bodies carry one) names the event; other bodies have none.
      // Only "type" is read: a plain parse (numbers' digits do not matter) is cheaper.
      const value = /^\s*\{/.test(body.subarray(0, 64).toString('latin1')) ? plainJson(body) : undefined;
      if (isJsonObject(value) && typeof value.type === 'string') eventType = value.type;
    }
  }

  const externalId = eventId(source, headers, schemeId, needJson, body);
  if (externalId.length === 0 || externalId.length > MAX_EXTERNAL_ID || externalId.includes('\u0000'))
    throw new IngressError(
      'missing_event_id',
      `the event id must be 1 to ${MAX_EXTERNAL_ID} characters, without NUL`,
    );
  const traceparent = headerText(headers, 'traceparent');
  return {
    externalId,
    // PostgreSQL text holds no NUL: such a type is dropped rather than failing the insert.
    eventType: eventType === null || eventType.includes('\u0000') ? null : eventType.slice(0, 255),
    headers: keptHeaders(source, headers),
    change,
    traceparent: traceparent && parseTraceparent(traceparent) ? traceparent : null,
  };
}

/**
 * The dedupe key: the source's configured header or body path when it names one (the operator
 * chose it), else the scheme's id (webhook-id, Stripe's event id, X-GitHub-Delivery), else
 * "sha256:" and the hex digest of the body (a byte-identical resend is the same event).
 *
 * Except supabase-database without either: pg_net never resends, and two changes can have the
 * same payload (a row set to B, back to A, to B again): a body digest would drop a real change
 * as a duplicate, so each request is an event of its own ("supabase:" and a random uuid).
 */
function eventId(
  source: InboundSource,
  headers: Headers,
  schemeId: string | undefined,
  needJson: () => Record<string, unknown>,
  body: Buffer,
): string {
  const dedupe = source.settings.dedupe;
  if (dedupe && 'header' in dedupe) {
    const value = headerText(headers, dedupe.header);
    if (!value)
      throw new IngressError('missing_event_id', `the header ${dedupe.header} (the event id) is missing`);
    return value;
  }
  if (dedupe && 'bodyPath' in dedupe) {
    let value: unknown = needJson();
    for (const part of dedupe.bodyPath.split('.'))
      value = isJsonObject(value) && Object.hasOwn(value, part) ? value[part] : undefined;
    if (typeof value === 'string' && value !== '') return value;
    if (isRawNumber(value)) return value.rawJSON;
    throw new IngressError(
      'missing_event_id',
      `the body has no string or number at ${dedupe.bodyPath} (the event id)`,
    );
  }
  if (schemeId) return schemeId;
  if (source.kind === 'stripe') throw new IngressError('missing_event_id', 'the Stripe event has no "id"');
  if (source.kind === 'supabase-database') return `supabase:${randomUUID()}`;
  return `sha256:${createHash('sha256').update(body).digest('hex')}`;
}

function keptHeaders(source: InboundSource, headers: Headers): Record<string, string> {
  const names = new Set([...ALWAYS_KEPT, ...(source.settings.keepHeaders ?? [])]);
  const scheme =
    source.kind === 'supabase-database'
      ? (source.settings.supabase ?? DEFAULT_SUPABASE).auth === 'standard-webhooks'
        ? SCHEME_HEADERS['standard-webhooks']
        : []
      : source.kind === 'hmac'
        ? [source.settings.hmac?.header ?? '']
        : SCHEME_HEADERS[source.kind];
  for (const name of scheme ?? []) if (name) names.add(name);
  const dedupe = source.settings.dedupe;
  if (dedupe && 'header' in dedupe) names.add(dedupe.header);
  // A shared secret is the credential itself: never stored, whatever keepHeaders says.
  if (source.kind === 'supabase-database')
    names.delete((source.settings.supabase ?? DEFAULT_SUPABASE).header);
  const kept: Record<string, string> = {};
  for (const name of names) {
    const value = headerText(headers, name);
    if (value !== undefined) kept[name] = value;
  }
  return kept;
}

function plainJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
}
