import { createHmac } from 'node:crypto';
import { secretKey } from '../secrets';

/**
 * The Standard Webhooks `webhook-signature` value for one attempt: `v1,<base64 HMAC-SHA256 of
 * "<id>.<timestamp>.<body>">` for every secret given (the current one and those still in their
 * rotation grace), space separated, so a receiver holding either secret verifies it. Secrets
 * that are not valid whsec_ values are skipped (the admin API never stores such).
 *
 * `timestampSeconds` is this attempt's (webhook-timestamp); the body is signed exactly as sent.
 */
export function signatureHeader(
  id: string,
  timestampSeconds: number,
  body: string,
  secrets: readonly string[],
): string {
  const signed = `${id}.${timestampSeconds}.${body}`;
  const parts: string[] = [];
  for (const secret of secrets) {
    const key = secretKey(secret);
    if (!key) continue;
    parts.push(`v1,${createHmac('sha256', key).update(signed, 'utf8').digest('base64')}`);
  }
  return parts.join(' ');
}
