import { SluiceError } from '@sluice/core';

/**
 * Stable `reason` strings (google.rpc.ErrorInfo) for every way authentication can fail. Clients
 * and tests may match on these; the messages next to them are short and never carry key material.
 */
export const AuthReason = {
  /** No `authorization` header and anonymous access is off. UNAUTHENTICATED. */
  tokenMissing: 'SLUICE_TOKEN_MISSING',
  /** The header is not `Bearer <token>`, or the token is not a well-formed JWS/JWT. UNAUTHENTICATED. */
  tokenMalformed: 'SLUICE_TOKEN_MALFORMED',
  /** The signature does not verify (forged, or signed with another key). UNAUTHENTICATED. */
  tokenInvalid: 'SLUICE_TOKEN_INVALID',
  /** `alg: none`, or an algorithm this server has no key of that type for (algorithm confusion). UNAUTHENTICATED. */
  algorithmNotAllowed: 'SLUICE_TOKEN_ALGORITHM_NOT_ALLOWED',
  /** The JWKS has no key for the token's `kid`/`alg`, even after a refetch. UNAUTHENTICATED. */
  keyNotFound: 'SLUICE_TOKEN_KEY_NOT_FOUND',
  /** `exp` has passed (beyond the clock tolerance). UNAUTHENTICATED. */
  tokenExpired: 'SLUICE_TOKEN_EXPIRED',
  /** `nbf` is still in the future (beyond the clock tolerance). UNAUTHENTICATED. */
  tokenNotYetValid: 'SLUICE_TOKEN_NOT_YET_VALID',
  /** A registered claim (`aud`, `iss`, `iat`, …) is wrong or has the wrong type; metadata `claim` names it. UNAUTHENTICATED. */
  claimInvalid: 'SLUICE_TOKEN_CLAIM_INVALID',
  /** The token's role is not in the allowlist. PERMISSION_DENIED. */
  roleNotAllowed: 'SLUICE_ROLE_NOT_ALLOWED',
  /** The JWKS URL could not be fetched or did not return a key set. UNAVAILABLE. */
  jwksUnavailable: 'SLUICE_JWKS_UNAVAILABLE',
} as const;

export type AuthReason = (typeof AuthReason)[keyof typeof AuthReason];

/** UNAUTHENTICATED with a stable reason; `cause` (e.g. the jose error) is for logs only. */
export function unauthenticated(
  reason: AuthReason,
  message: string,
  options: { cause?: unknown; metadata?: Record<string, string> } = {},
): SluiceError {
  return new SluiceError('UNAUTHENTICATED', message, { reason, ...options });
}
