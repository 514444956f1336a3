import { createHash } from 'node:crypto';
import { invalidArgument } from '@sluice/core';

/**
 * Keyset page tokens: opaque to clients, they carry the sort-key values of the last row sent
 * (as PostgreSQL text, re-sent as typed parameters) and a hash of the query's shape (table,
 * filter, order), so a token cannot continue a different query. Tampering with a token can
 * only move the page start: the values are parameters, and RLS still applies.
 */
interface TokenBody {
  readonly v: 1;
  /** Shape hash. */
  readonly s: string;
  /** Key values of the last row, in sort-key order. */
  readonly k: readonly (string | null)[];
}

export function queryShape(parts: unknown): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('base64url').slice(0, 22);
}

export function encodePageToken(shape: string, keys: readonly (string | null)[]): string {
  const body: TokenBody = { v: 1, s: shape, k: keys };
  return Buffer.from(JSON.stringify(body)).toString('base64url');
}

/**
 * @throws INVALID_ARGUMENT SLUICE_INVALID_PAGE_TOKEN for a malformed token,
 *   SLUICE_PAGE_TOKEN_MISMATCH for a token from a different query.
 */
export function decodePageToken(
  token: string,
  shape: string,
  keyCount: number,
  field: string,
): readonly (string | null)[] {
  let body: TokenBody;
  try {
    body = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as TokenBody;
  } catch {
    throw invalidArgument('SLUICE_INVALID_PAGE_TOKEN', field, 'The page token is malformed');
  }
  const valid =
    body !== null &&
    typeof body === 'object' &&
    body.v === 1 &&
    typeof body.s === 'string' &&
    Array.isArray(body.k) &&
    body.k.length === keyCount &&
    body.k.every((k) => k === null || typeof k === 'string');
  if (!valid) throw invalidArgument('SLUICE_INVALID_PAGE_TOKEN', field, 'The page token is malformed');
  if (body.s !== shape) {
    throw invalidArgument(
      'SLUICE_PAGE_TOKEN_MISMATCH',
      field,
      'The page token belongs to a different query (table, filter and order must stay the same)',
    );
  }
  return body.k;
}
