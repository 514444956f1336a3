import type { EnvReader } from '@sluice/core';

/** The JWT settings every service shares, as read from its environment. */
export interface AuthSettings {
  readonly jwtSecret: string | undefined;
  readonly jwksUrl: string | undefined;
  readonly audience: string | undefined;
  readonly issuer: string | undefined;
  readonly clockToleranceSeconds: number;
  readonly allowAnonymous: boolean;
  readonly anonRole: string;
  readonly defaultRole: string;
  readonly allowedRoles: readonly string[];
}

/**
 * Reads the JWT settings (JWT_SECRET, JWKS_URL, JWT_AUDIENCE, JWT_ISSUER, JWT_CLOCK_TOLERANCE_S,
 * ALLOW_ANONYMOUS, DB_ANON_ROLE, DB_DEFAULT_ROLE, DB_ROLES) through a service's EnvReader, so each
 * service's config.ts reads them the same way. Problems are recorded on the reader.
 */
export function readAuthSettings(r: EnvReader): AuthSettings {
  const anonRole = r.string('DB_ANON_ROLE', 'anon');
  const defaultRole = r.string('DB_DEFAULT_ROLE', 'authenticated');
  const allowedRoles = r.list('DB_ROLES', ['anon', 'authenticated', 'service_role']);
  for (const role of [anonRole, defaultRole]) {
    if (!allowedRoles.includes(role)) r.problem(`DB_ROLES must include ${role}`);
  }
  if (allowedRoles.some((role) => /^(postgres|pg_)/.test(role)))
    r.problem('DB_ROLES must not list postgres or pg_* roles');
  const jwtSecret = r.string('JWT_SECRET');
  if (jwtSecret !== undefined && jwtSecret.length < 32)
    r.problem('JWT_SECRET must be at least 32 characters');
  return {
    jwtSecret,
    jwksUrl: r.url('JWKS_URL'),
    audience: r.string('JWT_AUDIENCE'),
    issuer: r.string('JWT_ISSUER'),
    clockToleranceSeconds: r.int('JWT_CLOCK_TOLERANCE_S', 30, { max: 600 }),
    allowAnonymous: r.bool('ALLOW_ANONYMOUS', true),
    anonRole,
    defaultRole,
    allowedRoles,
  };
}
