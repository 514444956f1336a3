/**
 * The JSON the webhooks tables hold for a source's options (sources.settings) and an endpoint's
 * row-change selections (endpoints.tables): written by the admin API, read by the ingress and
 * the fan-out. One definition so both sides agree; unknown or ill-typed fields read as absent.
 */

export type SourceKind =
  | 'standard-webhooks'
  | 'stripe'
  | 'github'
  | 'hmac'
  | 'supabase-database'
  | 'operational';

export interface StoredHmac {
  /** Lower-case header name. */
  readonly header: string;
  readonly algorithm: 'sha1' | 'sha256' | 'sha512';
  readonly encoding: 'hex' | 'base64';
  readonly prefix: string;
}

export interface StoredSupabase {
  readonly auth: 'shared-secret' | 'standard-webhooks';
  /** Lower-case header carrying the shared secret. */
  readonly header: string;
}

export type StoredDedupe = { readonly header: string } | { readonly bodyPath: string };

/** sources.settings */
export interface SourceSettings {
  readonly hmac?: StoredHmac;
  readonly supabase?: StoredSupabase;
  readonly dedupe?: StoredDedupe;
  /** Overrides of the service defaults (WEBHOOKS_TOLERANCE_SECONDS, …); absent: the default. */
  readonly toleranceSeconds?: number;
  readonly maxBodyBytes?: number;
  readonly ratePerSecond?: number;
  /** Lower-case header names stored with each event besides the scheme's own. */
  readonly keepHeaders?: readonly string[];
}

export const DEFAULT_SUPABASE: StoredSupabase = { auth: 'shared-secret', header: 'x-webhook-secret' };

export type ChangeOperation = 'INSERT' | 'UPDATE' | 'DELETE';

/** One element of endpoints.tables. */
export interface StoredTableSelection {
  readonly schema: string;
  readonly table: string;
  /** Empty: all three. */
  readonly operations: readonly ChangeOperation[];
  /** sluice.type.v1.Filter in its proto3 JSON form (Filter.toJSON), or absent. */
  readonly filter?: unknown;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const posInt = (v: unknown): number | undefined =>
  typeof v === 'number' && Number.isInteger(v) && v > 0 ? v : undefined;

/** sources.settings as stored, read defensively. */
export function readSourceSettings(json: unknown): SourceSettings {
  if (!isObject(json)) return {};
  const out: {
    -readonly [K in keyof SourceSettings]: SourceSettings[K];
  } = {};
  const h = json.hmac;
  if (isObject(h) && str(h.header)) {
    const algorithm = h.algorithm === 'sha1' || h.algorithm === 'sha512' ? h.algorithm : 'sha256';
    out.hmac = {
      header: String(h.header).toLowerCase(),
      algorithm,
      encoding: h.encoding === 'base64' ? 'base64' : 'hex',
      prefix: str(h.prefix) ?? '',
    };
  }
  const s = json.supabase;
  if (isObject(s))
    out.supabase = {
      auth: s.auth === 'standard-webhooks' ? 'standard-webhooks' : 'shared-secret',
      header: (str(s.header) ?? DEFAULT_SUPABASE.header).toLowerCase(),
    };
  const d = json.dedupe;
  if (isObject(d)) {
    if (str(d.header)) out.dedupe = { header: String(d.header).toLowerCase() };
    else if (str(d.bodyPath)) out.dedupe = { bodyPath: String(d.bodyPath) };
  }
  const tolerance = posInt(json.toleranceSeconds);
  if (tolerance) out.toleranceSeconds = tolerance;
  const maxBody = posInt(json.maxBodyBytes);
  if (maxBody) out.maxBodyBytes = maxBody;
  const rate = posInt(json.ratePerSecond);
  if (rate) out.ratePerSecond = rate;
  if (Array.isArray(json.keepHeaders))
    out.keepHeaders = json.keepHeaders
      .filter((x): x is string => typeof x === 'string')
      .map((x) => x.toLowerCase());
  return out;
}

/** endpoints.tables as stored, read defensively. */
export function readTableSelections(json: unknown): StoredTableSelection[] {
  if (!Array.isArray(json)) return [];
  const out: StoredTableSelection[] = [];
  for (const item of json) {
    if (!isObject(item) || !str(item.table)) continue;
    const operations = Array.isArray(item.operations)
      ? item.operations.filter(
          (o): o is ChangeOperation => o === 'INSERT' || o === 'UPDATE' || o === 'DELETE',
        )
      : [];
    out.push({
      schema: str(item.schema) || 'public',
      table: String(item.table),
      operations,
      ...(item.filter === undefined || item.filter === null ? {} : { filter: item.filter }),
    });
  }
  return out;
}
