import { invalidArgument, Reason, SluiceError } from '@sluice/core';
import {
  compile,
  type Database,
  formatTimestamp,
  parseTimestamp,
  type RequestScope,
  type StatementResult,
} from '@sluice/db';
import type { AuthenticatedContext } from '@sluice/grpc';
import { type RawBuilder, sql } from 'kysely';
import type { CallContext } from 'nice-grpc';
import { parseUuid } from '../ids';

/**
 * What every admin handler shares: the request scope (the caller's role and claims, like the
 * data service), the caller's tenant, result rows by column name, timestamps, paging.
 */

export type Context = CallContext & AuthenticatedContext;

/** Timestamp as the generated proto types carry it. */
export interface Timestamp {
  seconds: bigint;
  nanos: number;
}

export const SERVICE_ROLE = 'service_role';

/** The call's request scope: every admin statement runs as the caller (RLS does the tenancy). */
export function scopeOf(context: Context, readOnly: boolean, signal?: AbortSignal): RequestScope {
  const { deadline, traceId, traceparent } = context.sluice;
  return {
    identity: context.identity,
    readOnly,
    signal: signal ?? context.sluice.signal,
    deadline,
    ...(traceId ? { traceId } : {}),
    ...(traceparent ? { traceparent } : {}),
  };
}

export const isServiceRole = (context: Context): boolean => context.identity.role === SERVICE_ROLE;

/**
 * The caller's tenant as the database reads it (auth.tenant_id()): its tenant claim when that is
 * a uuid, in any case, as canonical lower-case text; otherwise none.
 */
export const callerTenant = (context: Context): string | null =>
  parseUuid(context.identity.tenantId ?? '') ?? null;

/**
 * The tenant a new row belongs to: service_role names it in the request (empty: service-level,
 * no tenant); anyone else creates in the tenant of its claims, and naming another is refused
 * (RLS would refuse it anyway; this says why).
 */
export function tenantFor(context: Context, requested: string, field: string): string | null {
  if (isServiceRole(context)) {
    if (requested === '') return null;
    return uuidField(requested, field);
  }
  const own = callerTenant(context);
  if (requested !== '' && requested.toLowerCase() !== own) {
    throw new SluiceError('PERMISSION_DENIED', 'Only service_role may act for another tenant', {
      reason: Reason.permissionDenied,
      violations: [{ field, description: 'not the tenant of the caller' }],
    });
  }
  return own;
}

/** A required uuid field: INVALID_ARGUMENT naming it when missing or malformed. */
export function uuidField(value: string, field: string): string {
  if (value === '') throw invalidArgument(Reason.invalidArgument, field, `${field} is required`);
  const id = parseUuid(value);
  if (!id) throw invalidArgument(Reason.invalidValue, field, `${field} must be a UUID`);
  return id;
}

export function notFound(what: string, id: string): SluiceError {
  return new SluiceError('NOT_FOUND', `No ${what} ${id}`, { reason: Reason.notFound });
}

export function invalid(
  field: string,
  description: string,
  reason: Reason = Reason.invalidValue,
): SluiceError {
  return invalidArgument(reason, field, description);
}

/** A statement's rows as objects by column name, raw PostgreSQL text (null for NULL). */
export function rowsOf(result: StatementResult | undefined): Record<string, string | null>[] {
  if (!result) return [];
  return result.rows.map((row) => {
    const out: Record<string, string | null> = {};
    result.fields.forEach((f, i) => {
      out[f.name] = row[i] ?? null;
    });
    return out;
  });
}

/** PostgreSQL's text of a timestamptz (TimeZone UTC on every pooled connection). */
export function timestampOf(text: string | null | undefined): Timestamp | undefined {
  return text ? parseTimestamp(text) : undefined;
}

export function timestampToDate(ts: Timestamp): Date {
  return new Date(Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1_000_000));
}

/** A Timestamp as text PostgreSQL reads exactly (microseconds kept). */
export function timestampText(ts: Timestamp): string {
  return formatTimestamp(ts);
}

/**
 * A Timestamp of a request as text for SQL: nanos outside 0–999,999,999 are refused (written
 * out, 1,500,000,000 nanos would read as 0.15 s, not 1.5).
 */
export function timestampField(ts: Timestamp, field: string): string {
  if (!Number.isInteger(ts.nanos) || ts.nanos < 0 || ts.nanos > 999_999_999)
    throw invalid(field, 'nanos must be 0 to 999,999,999');
  return formatTimestamp(ts);
}

export const DEFAULT_PAGE = 100;
export const MAX_PAGE = 1000;

/**
 * Bytes of large fields (payloads, response bodies) one page carries at most, always one row at
 * least: gRPC refuses an answer over 4 MiB, and a page of 100 messages of 1 MiB is 100 MiB.
 */
export const MAX_PAGE_BYTES = 2 * 1024 * 1024;

/**
 * The rows of a page out of `rows` (read with limit + 1): at most `limit`, ending early once
 * the rows before reach MAX_PAGE_BYTES by `bytes`; `more` when rows are left for the next page.
 */
export function boundedPage<T>(
  rows: readonly T[],
  limit: number,
  bytes: (row: T) => number,
): { page: T[]; more: boolean } {
  const page: T[] = [];
  let total = 0;
  for (const row of rows) {
    if (page.length === limit || (page.length > 0 && total >= MAX_PAGE_BYTES)) break;
    page.push(row);
    total += bytes(row);
  }
  return { page, more: page.length < rows.length };
}

/**
 * One page of a table the caller may see (RLS), oldest first, by the keyset (created_at, id):
 * `request.limit` rows at most (bounded by MAX_PAGE_BYTES through `bytes`), and the token of
 * the next page when rows are left. `table` and `columns` are the handler's own SQL, never input.
 */
export async function listByCreation(
  db: Database,
  context: Context,
  request: { readonly limit: number; readonly pageToken: string },
  from: { readonly table: RawBuilder<unknown>; readonly columns: RawBuilder<unknown> },
  bytes: (row: Record<string, string | null>) => number,
): Promise<{ page: Record<string, string | null>[]; nextPageToken: string }> {
  const limit = pageLimit(request.limit);
  const after = decodeTimeIdToken(request.pageToken);
  const where = after ? sql`where (created_at, id) > (${after[0]}::timestamptz, ${after[1]}::uuid)` : sql``;
  const [result] = await db.run(scopeOf(context, true), [
    compile(
      sql`select ${from.columns} from ${from.table} ${where} order by created_at, id limit ${limit + 1}`,
    ),
  ]);
  const { page, more } = boundedPage(rowsOf(result), limit, bytes);
  const last = page[page.length - 1];
  return {
    page,
    nextPageToken: more && last ? encodePageToken([last.created_at ?? '', last.id ?? '']) : '',
  };
}

export function pageLimit(limit: number, field = 'limit'): number {
  if (limit > MAX_PAGE) throw invalid(field, `at most ${MAX_PAGE}`);
  return limit === 0 ? DEFAULT_PAGE : limit;
}

/**
 * Page tokens: the sort key of the last row sent, opaque to clients (base64url of its parts).
 * Only the shape is checked; a token from another list just starts somewhere else in this one.
 */
export function encodePageToken(parts: readonly string[]): string {
  return Buffer.from(JSON.stringify(parts)).toString('base64url');
}

export function decodePageToken(token: string, arity: number, field = 'page_token'): string[] | undefined {
  if (token === '') return undefined;
  let parts: unknown;
  try {
    parts = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    parts = undefined;
  }
  if (!Array.isArray(parts) || parts.length !== arity || parts.some((p) => typeof p !== 'string')) {
    throw invalidArgument(Reason.invalidPageToken, field, 'The page token is malformed');
  }
  return parts as string[];
}

/** A lower-case HTTP header name (RFC 9110 token). */
export const HEADER_NAME = /^[a-z0-9!#$%&'*+.^_`|~-]{1,100}$/;

/** Printable text without control characters (header values, descriptions). */
export const HEADER_VALUE = /^[\t\x20-\x7e\x80-\uffff]*$/;

export function checkDescription(text: string, field: string): string {
  if (text.length > 1000) throw invalid(field, 'at most 1000 characters');
  return text;
}

const DEFAULT_GRACE_SECONDS = 86_400;
const MAX_GRACE_SECONDS = 30 * 86_400;

/** How long replaced secrets stay valid, as an interval for set_secret (0: the default 24 h). */
export function graceInterval(seconds: number, field: string): string {
  if (seconds > MAX_GRACE_SECONDS) throw invalid(field, `at most ${MAX_GRACE_SECONDS} (30 days)`);
  return `${seconds === 0 ? DEFAULT_GRACE_SECONDS : seconds} seconds`;
}

/** A page token of (created_at as PostgreSQL wrote it, uuid), checked before it reaches SQL. */
export function decodeTimeIdToken(token: string, field = 'page_token'): [string, string] | undefined {
  const parts = decodePageToken(token, 2, field);
  if (!parts) return undefined;
  const [time = '', id = ''] = parts;
  if (!parseTimestamp(time) || !parseUuid(id))
    throw invalidArgument(Reason.invalidPageToken, field, 'The page token is malformed');
  return [time, id];
}
