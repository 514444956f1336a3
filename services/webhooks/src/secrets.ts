import { randomBytes } from 'node:crypto';

/**
 * Secrets in the Standard Webhooks format: `whsec_` + base64 of the key bytes. Endpoints sign
 * with the decoded bytes; generated source secrets use the same format so a Standard Webhooks
 * sender (or Svix's libraries) takes them as they are.
 */
export const SECRET_PREFIX = 'whsec_';

/** A new random secret: 32 bytes, as whsec_…. */
export function generateSecret(): string {
  return `${SECRET_PREFIX}${randomBytes(32).toString('base64')}`;
}

/**
 * The key bytes of a whsec_ secret, or undefined when it is not one (wrong prefix, not base64,
 * fewer than 24 or more than 64 bytes — Svix's own bounds).
 */
export function secretKey(secret: string): Buffer | undefined {
  if (!secret.startsWith(SECRET_PREFIX)) return undefined;
  const text = secret.slice(SECRET_PREFIX.length);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text)) return undefined;
  const key = Buffer.from(text, 'base64');
  return key.length >= 24 && key.length <= 64 ? key : undefined;
}
