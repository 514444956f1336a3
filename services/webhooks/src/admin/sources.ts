import { Reason } from '@sluice/core';
import { compile, type Database } from '@sluice/db';
import { webhooks } from '@sluice/proto';
import { sql } from 'kysely';
import { generateSecret, secretKey } from '../secrets';
import {
  readSourceSettings,
  type SourceKind,
  type SourceSettings,
  type StoredDedupe,
  type StoredHmac,
  type StoredSupabase,
} from '../stored-settings';
import {
  type Context,
  checkDescription,
  graceInterval,
  HEADER_NAME,
  invalid,
  listByCreation,
  notFound,
  rowsOf,
  scopeOf,
  tenantFor,
  timestampOf,
  uuidField,
} from './common';

/**
 * Sources: the inbound half of the admin API. Rows are read and written under the caller's
 * identity; secrets only through sluice_webhooks.set_secret, and shown once.
 */

const { SourceKind: Kind } = webhooks;

const KINDS: Readonly<Record<number, SourceKind>> = {
  [Kind.SOURCE_KIND_STANDARD_WEBHOOKS]: 'standard-webhooks',
  [Kind.SOURCE_KIND_STRIPE]: 'stripe',
  [Kind.SOURCE_KIND_GITHUB]: 'github',
  [Kind.SOURCE_KIND_HMAC]: 'hmac',
  [Kind.SOURCE_KIND_SUPABASE_DATABASE]: 'supabase-database',
  [Kind.SOURCE_KIND_OPERATIONAL]: 'operational',
};

export function kindOf(text: string | null | undefined): webhooks.SourceKind {
  const entry = Object.entries(KINDS).find(([, name]) => name === text);
  return entry ? (Number(entry[0]) as webhooks.SourceKind) : Kind.SOURCE_KIND_UNSPECIFIED;
}

export const SOURCE_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const MAX_TOLERANCE_SECONDS = 86_400;
const MIN_BODY_BYTES = 1024;
const MAX_RATE = 1_000_000;
const MAX_KEEP_HEADERS = 50;
const MAX_SECRET_LENGTH = 1024;
const BODY_PATH = /^[^.\s]{1,100}(\.[^.\s]{1,100}){0,19}$/;

const COLUMNS = sql`id, tenant_id, name, kind, description, settings::text as settings, enabled, created_at, updated_at`;

function headerName(value: string, field: string): string {
  const name = value.toLowerCase();
  if (!HEADER_NAME.test(name)) throw invalid(field, 'must be an HTTP header name');
  return name;
}

function hmacOf(h: webhooks.HmacScheme, field: string): StoredHmac {
  if (h.header === '')
    throw invalid(`${field}.header`, 'the signature header is required', Reason.invalidArgument);
  const algorithm = (
    {
      [webhooks.HmacAlgorithm.HMAC_ALGORITHM_UNSPECIFIED]: 'sha256',
      [webhooks.HmacAlgorithm.HMAC_ALGORITHM_SHA256]: 'sha256',
      [webhooks.HmacAlgorithm.HMAC_ALGORITHM_SHA1]: 'sha1',
      [webhooks.HmacAlgorithm.HMAC_ALGORITHM_SHA512]: 'sha512',
    } as const
  )[h.algorithm as number];
  if (!algorithm) throw invalid(`${field}.algorithm`, `unknown algorithm ${h.algorithm}`);
  const encoding = (
    {
      [webhooks.SignatureEncoding.SIGNATURE_ENCODING_UNSPECIFIED]: 'hex',
      [webhooks.SignatureEncoding.SIGNATURE_ENCODING_HEX]: 'hex',
      [webhooks.SignatureEncoding.SIGNATURE_ENCODING_BASE64]: 'base64',
    } as const
  )[h.encoding as number];
  if (!encoding) throw invalid(`${field}.encoding`, `unknown encoding ${h.encoding}`);
  if (h.prefix.length > 100 || /[\r\n]/.test(h.prefix))
    throw invalid(`${field}.prefix`, 'at most 100 characters, one line');
  return { header: headerName(h.header, `${field}.header`), algorithm, encoding, prefix: h.prefix };
}

function supabaseOf(s: webhooks.SupabaseScheme, field: string): StoredSupabase {
  const auth = (
    {
      [webhooks.SupabaseAuth.SUPABASE_AUTH_UNSPECIFIED]: 'shared-secret',
      [webhooks.SupabaseAuth.SUPABASE_AUTH_SHARED_SECRET]: 'shared-secret',
      [webhooks.SupabaseAuth.SUPABASE_AUTH_STANDARD_WEBHOOKS]: 'standard-webhooks',
    } as const
  )[s.auth as number];
  if (!auth) throw invalid(`${field}.auth`, `unknown auth ${s.auth}`);
  return { auth, header: s.header === '' ? 'x-webhook-secret' : headerName(s.header, `${field}.header`) };
}

function dedupeOf(d: webhooks.DedupeKey, field: string): StoredDedupe | undefined {
  const from = d.from;
  if (!from) return undefined;
  if (from.$case === 'header') return { header: headerName(from.value, `${field}.header`) };
  if (!BODY_PATH.test(from.value))
    throw invalid(`${field}.body_path`, 'must be a dot-separated path such as data.id');
  return { bodyPath: from.value };
}

function bounded(value: number, field: string, min: number, max: number): number | undefined {
  if (value === 0) return undefined;
  if (value < min || value > max) throw invalid(field, `must be between ${min} and ${max} (0: the default)`);
  return value;
}

function keepHeadersOf(names: readonly string[], field: string): string[] {
  if (names.length > MAX_KEEP_HEADERS) throw invalid(field, `at most ${MAX_KEEP_HEADERS} headers`);
  return [...new Set(names.map((n, i) => headerName(n, `${field}[${i}]`)))];
}

/** Options that belong to one kind only are refused on others, rather than stored and ignored. */
function kindOptions(
  kind: SourceKind,
  hmac: webhooks.HmacScheme | undefined,
  supabase: webhooks.SupabaseScheme | undefined,
  prefix: string,
): Pick<SourceSettings, 'hmac' | 'supabase'> {
  if (hmac && kind !== 'hmac') throw invalid(`${prefix}hmac`, 'only for kind HMAC');
  if (supabase && kind !== 'supabase-database')
    throw invalid(`${prefix}supabase`, 'only for kind SUPABASE_DATABASE');
  if (kind === 'hmac') {
    if (!hmac) throw invalid(`${prefix}hmac`, 'kind HMAC needs its header', Reason.invalidArgument);
    return { hmac: hmacOf(hmac, `${prefix}hmac`) };
  }
  if (kind === 'supabase-database')
    return { supabase: supabaseOf(supabase ?? { auth: 0, header: '' }, `${prefix}supabase`) };
  return {};
}

/** Whether the kind's verification takes a Standard Webhooks key (whsec_ / whpk_). */
function takesStandardKey(kind: SourceKind, settings: SourceSettings): boolean {
  return (
    kind === 'standard-webhooks' ||
    (kind === 'supabase-database' && settings.supabase?.auth === 'standard-webhooks')
  );
}

/** The forms the ingress verifies with (inbound/verify.ts): whsec_, whpk_, bare base64, each maybe after "v1,". */
function isStandardKey(secret: string): boolean {
  const text = secret.startsWith('v1,') ? secret.slice(3) : secret;
  if (text.startsWith('whsec_')) return secretKey(text) !== undefined;
  if (text.startsWith('whpk_')) return /^[A-Za-z0-9+/]{43}=$/.test(text.slice(5));
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text)) return false;
  const bytes = Buffer.from(text, 'base64').length;
  return bytes >= 16 && bytes <= 64;
}

function checkSecret(secret: string, standard: boolean, field: string): string {
  if (secret.length > MAX_SECRET_LENGTH || !/^[\x21-\x7e]+$/.test(secret))
    throw invalid(field, `printable ASCII without spaces, at most ${MAX_SECRET_LENGTH} characters`);
  if (standard && !isStandardKey(secret))
    throw invalid(
      field,
      'a Standard Webhooks key: whsec_ + base64 of 24–64 bytes (also as Supabase shows it, v1,whsec_…), whpk_ + base64 of a 32-byte ed25519 public key, or bare base64',
    );
  return secret;
}

/** A sources row as the API shows it (never a secret). */
export function toSource(row: Record<string, string | null>): webhooks.Source {
  const s = readSourceSettings(JSON.parse(row.settings ?? '{}'));
  const hmac = s.hmac && {
    header: s.hmac.header,
    algorithm: {
      sha256: webhooks.HmacAlgorithm.HMAC_ALGORITHM_SHA256,
      sha1: webhooks.HmacAlgorithm.HMAC_ALGORITHM_SHA1,
      sha512: webhooks.HmacAlgorithm.HMAC_ALGORITHM_SHA512,
    }[s.hmac.algorithm],
    encoding:
      s.hmac.encoding === 'base64'
        ? webhooks.SignatureEncoding.SIGNATURE_ENCODING_BASE64
        : webhooks.SignatureEncoding.SIGNATURE_ENCODING_HEX,
    prefix: s.hmac.prefix,
  };
  const supabase = s.supabase && {
    auth:
      s.supabase.auth === 'standard-webhooks'
        ? webhooks.SupabaseAuth.SUPABASE_AUTH_STANDARD_WEBHOOKS
        : webhooks.SupabaseAuth.SUPABASE_AUTH_SHARED_SECRET,
    header: s.supabase.header,
  };
  const dedupe: webhooks.DedupeKey | undefined = s.dedupe && {
    from:
      'header' in s.dedupe
        ? { $case: 'header', value: s.dedupe.header }
        : { $case: 'bodyPath', value: s.dedupe.bodyPath },
  };
  return {
    id: row.id ?? '',
    tenantId: row.tenant_id ?? '',
    name: row.name ?? '',
    kind: kindOf(row.kind),
    description: row.description ?? '',
    hmac,
    supabase,
    dedupe,
    toleranceSeconds: s.toleranceSeconds ?? 0,
    maxBodyBytes: s.maxBodyBytes ?? 0,
    ratePerSecond: s.ratePerSecond ?? 0,
    enabled: row.enabled === 't',
    keepHeaders: [...(s.keepHeaders ?? [])],
    createdAt: timestampOf(row.created_at),
    updatedAt: timestampOf(row.updated_at),
  };
}

const withoutUndefined = <T extends object>(o: T): T =>
  Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;

export interface SourceHandlersDeps {
  readonly db: Database;
  /** The largest max_body_bytes a source may set (InboundSettings.maxSourceBodyBytes). */
  readonly maxBodyBytes: number;
}

export function sourceHandlers({ db, maxBodyBytes: MAX_BODY_BYTES }: SourceHandlersDeps) {
  async function getRow(context: Context, id: string): Promise<Record<string, string | null>> {
    const [result] = await db.run(scopeOf(context, true), [
      compile(sql`select ${COLUMNS} from sluice_webhooks.sources where id = ${id}::uuid`),
    ]);
    const row = rowsOf(result)[0];
    if (!row) throw notFound('source', id);
    return row;
  }

  return {
    async createSource(
      req: webhooks.CreateSourceRequest,
      context: Context,
    ): Promise<webhooks.CreateSourceResponse> {
      const s = req.source;
      if (!s) throw invalid('source', 'a source is required', Reason.invalidArgument);
      if (!SOURCE_NAME.test(s.name))
        throw invalid(
          'source.name',
          'lower-case letters, digits, - and _, starting with a letter or digit, at most 63',
        );
      const kind = KINDS[s.kind as number];
      if (!kind) throw invalid('source.kind', 'a kind is required', Reason.invalidArgument);
      if (kind === 'operational') throw invalid('source.kind', 'OPERATIONAL sources belong to Sluice');
      const settings: SourceSettings = withoutUndefined({
        ...kindOptions(kind, s.hmac, s.supabase, 'source.'),
        dedupe: s.dedupe ? dedupeOf(s.dedupe, 'source.dedupe') : undefined,
        toleranceSeconds: bounded(s.toleranceSeconds, 'source.tolerance_seconds', 1, MAX_TOLERANCE_SECONDS),
        maxBodyBytes: bounded(s.maxBodyBytes, 'source.max_body_bytes', MIN_BODY_BYTES, MAX_BODY_BYTES),
        ratePerSecond: bounded(s.ratePerSecond, 'source.rate_per_second', 1, MAX_RATE),
        keepHeaders:
          s.keepHeaders.length > 0 ? keepHeadersOf(s.keepHeaders, 'source.keep_headers') : undefined,
      });
      const secret =
        req.secret === ''
          ? generateSecret()
          : checkSecret(req.secret, takesStandardKey(kind, settings), 'secret');
      const tenant = tenantFor(context, s.tenantId, 'source.tenant_id');
      const description = checkDescription(s.description, 'source.description');
      const row = await db.transaction(scopeOf(context, false), async (tx) => {
        const inserted = rowsOf(
          await tx.query(
            compile(sql`insert into sluice_webhooks.sources (tenant_id, name, kind, description, settings)
              values (${tenant}::uuid, ${s.name}, ${kind}, ${description}, ${JSON.stringify(settings)}::jsonb)
              returning ${COLUMNS}`),
          ),
        )[0];
        if (!inserted) throw new Error('insert returned no row');
        await tx.query(
          compile(
            sql`select sluice_webhooks.set_secret(${inserted.id}::uuid, null, ${secret}, interval '0')`,
          ),
        );
        return inserted;
      });
      return { source: toSource(row), secret, path: `/webhooks/${s.name}` };
    },

    async getSource(req: webhooks.GetSourceRequest, context: Context): Promise<webhooks.GetSourceResponse> {
      return { source: toSource(await getRow(context, uuidField(req.id, 'id'))) };
    },

    async listSources(
      req: webhooks.ListSourcesRequest,
      context: Context,
    ): Promise<webhooks.ListSourcesResponse> {
      const { page, nextPageToken } = await listByCreation(
        db,
        context,
        req,
        { table: sql`sluice_webhooks.sources`, columns: COLUMNS },
        (r) => Buffer.byteLength(r.settings ?? '') + Buffer.byteLength(r.description ?? ''),
      );
      return { sources: page.map(toSource), nextPageToken };
    },

    async updateSource(
      req: webhooks.UpdateSourceRequest,
      context: Context,
    ): Promise<webhooks.UpdateSourceResponse> {
      const id = uuidField(req.id, 'id');
      const row = await db.transaction(scopeOf(context, false), async (tx) => {
        const current = rowsOf(
          await tx.query(
            compile(sql`select ${COLUMNS} from sluice_webhooks.sources where id = ${id}::uuid for update`),
          ),
        )[0];
        if (!current) throw notFound('source', id);
        const kind = current.kind as SourceKind;
        const old = readSourceSettings(JSON.parse(current.settings ?? '{}'));
        if (req.hmac && kind !== 'hmac') throw invalid('hmac', 'only for kind HMAC');
        if (req.supabase && kind !== 'supabase-database')
          throw invalid('supabase', 'only for kind SUPABASE_DATABASE');
        const settings: SourceSettings = withoutUndefined({
          ...old,
          ...(req.hmac ? { hmac: hmacOf(req.hmac, 'hmac') } : {}),
          ...(req.supabase ? { supabase: supabaseOf(req.supabase, 'supabase') } : {}),
          // A DedupeKey with nothing set goes back to the scheme's own event id.
          ...(req.dedupe ? { dedupe: dedupeOf(req.dedupe, 'dedupe') } : {}),
          ...(req.toleranceSeconds !== undefined
            ? {
                toleranceSeconds: bounded(
                  req.toleranceSeconds,
                  'tolerance_seconds',
                  1,
                  MAX_TOLERANCE_SECONDS,
                ),
              }
            : {}),
          ...(req.maxBodyBytes !== undefined
            ? { maxBodyBytes: bounded(req.maxBodyBytes, 'max_body_bytes', MIN_BODY_BYTES, MAX_BODY_BYTES) }
            : {}),
          ...(req.ratePerSecond !== undefined
            ? { ratePerSecond: bounded(req.ratePerSecond, 'rate_per_second', 1, MAX_RATE) }
            : {}),
          ...(req.setKeepHeaders ? { keepHeaders: keepHeadersOf(req.keepHeaders, 'keep_headers') } : {}),
        });
        const description =
          req.description !== undefined
            ? checkDescription(req.description, 'description')
            : current.description;
        const enabled = req.enabled ?? current.enabled === 't';
        return rowsOf(
          await tx.query(
            compile(sql`update sluice_webhooks.sources
                 set description = ${description}, enabled = ${enabled}, settings = ${JSON.stringify(settings)}::jsonb,
                     updated_at = now()
               where id = ${id}::uuid returning ${COLUMNS}`),
          ),
        )[0];
      });
      if (!row) throw notFound('source', id);
      return { source: toSource(row) };
    },

    async deleteSource(
      req: webhooks.DeleteSourceRequest,
      context: Context,
    ): Promise<webhooks.DeleteSourceResponse> {
      const id = uuidField(req.id, 'id');
      const [result] = await db.run(scopeOf(context, false), [
        compile(
          sql`delete from sluice_webhooks.sources where id = ${id}::uuid and kind <> 'operational' returning id`,
        ),
      ]);
      if (!result?.rowCount) throw notFound('source', id);
      return {};
    },

    async rotateSourceSecret(
      req: webhooks.RotateSourceSecretRequest,
      context: Context,
    ): Promise<webhooks.RotateSourceSecretResponse> {
      const id = uuidField(req.id, 'id');
      const grace = graceInterval(req.graceSeconds, 'grace_seconds');
      const row = await getRow(context, id);
      const kind = row.kind as SourceKind;
      if (kind === 'operational')
        throw invalid('id', 'the operational source has no secret', Reason.invalidArgument);
      const settings = readSourceSettings(JSON.parse(row.settings ?? '{}'));
      const secret =
        req.secret === ''
          ? generateSecret()
          : checkSecret(req.secret, takesStandardKey(kind, settings), 'secret');
      const [result] = await db.run(scopeOf(context, false), [
        compile(
          sql`select sluice_webhooks.set_secret(${id}::uuid, null, ${secret}, ${grace}::interval) as until`,
        ),
      ]);
      return { secret, previousValidUntil: timestampOf(rowsOf(result)[0]?.until) };
    },
  };
}
