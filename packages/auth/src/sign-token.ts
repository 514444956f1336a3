import { SignJWT } from 'jose';

export interface SignTokenOptions {
  /** A jose time span (`'1h'`, `'7d'`) or a number of seconds from now. Omitted: no `exp` unless `claims` has one. */
  readonly expiresIn?: string | number;
  readonly audience?: string;
  readonly issuer?: string;
}

/**
 * Signs `claims` as an HS256 JWT with `secret` — for demo tokens printed at startup and for
 * tests. `iat` is set to now unless `claims` carries one; `exp`, `nbf`, `sub` … in `claims` are
 * kept as given. Throws a TypeError for an empty secret. No I/O, so no signal.
 */
export async function signToken(
  secret: string,
  claims: Record<string, unknown>,
  options: SignTokenOptions = {},
): Promise<string> {
  if (secret.length === 0) throw new TypeError('signToken: the secret must not be empty');
  const jwt = new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' });
  if (claims.iat === undefined) jwt.setIssuedAt();
  const { expiresIn, audience, issuer } = options;
  // jose reads a bare number as an absolute timestamp; "expiresIn" means a duration.
  if (typeof expiresIn === 'number') jwt.setExpirationTime(Math.floor(Date.now() / 1000) + expiresIn);
  else if (expiresIn !== undefined) jwt.setExpirationTime(expiresIn);
  if (audience !== undefined) jwt.setAudience(audience);
  if (issuer !== undefined) jwt.setIssuer(issuer);
  return jwt.sign(new TextEncoder().encode(secret));
}
