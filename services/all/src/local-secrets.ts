import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * A secret generated once for this checkout and kept in `.sluice/` (git-ignored, mode 0600), so
 * the demo tokens printed by `npm start` stay valid across restarts. Local development only:
 * deployments set JWT_SECRET or JWKS_URL.
 */
export function localSecret(projectRoot: string, name: string): string {
  const dir = path.join(projectRoot, '.sluice');
  const file = path.join(dir, name);
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  mkdirSync(dir, { recursive: true });
  const secret = randomBytes(32).toString('base64url');
  writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  return secret;
}
