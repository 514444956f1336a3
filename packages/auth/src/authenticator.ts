import {
  abortError,
  ConfigError,
  deepFreeze,
  type Identity,
  SluiceError,
  throwIfAborted,
} from '@sluice/core';
import {
  type CryptoKey,
  createRemoteJWKSet,
  decodeProtectedHeader,
  errors,
  type JWTPayload,
  type JWTVerifyGetKey,
  type JWTVerifyOptions,
  jwtVerify,
} from 'jose';
import { AuthReason, unauthenticated } from './errors';
import { TokenCache } from './token-cache';

/** Settings for {@link createAuthenticator}. Plain values: the service's config.ts reads the environment. */
export interface AuthConfig {
  /** Shared secret for HS256/HS384/HS512 tokens. */
  readonly jwtSecret?: string;
  /** JWKS URL for asymmetric tokens (RS*, PS*, ES*, EdDSA). Neither this nor `jwtSecret`: only anonymous access. */
  readonly jwksUrl?: string;
  /** Accepted `aud` value(s); omitted: `aud` is not checked. */
  readonly audience?: string | readonly string[];
  /** Required `iss`; omitted: `iss` is not checked. */
  readonly issuer?: string;
  /** Skew allowed on `exp`/`nbf`/`iat`, in seconds (callers default to 30). */
  readonly clockToleranceSeconds: number;
  readonly allowAnonymous: boolean;
  /** Role for requests without a token, e.g. `anon`. Must be in `allowedRoles` when anonymous access is on. */
  readonly anonRole: string;
  /** The only roles a token may ever run as, e.g. `anon`, `authenticated`, `service_role`. */
  readonly allowedRoles: readonly string[];
  /** Role of a valid token without a role claim, e.g. `authenticated`. Must be in `allowedRoles`. */
  readonly defaultRole: string;
  /** Top-level claim naming the role. Default `role`. */
  readonly roleClaim?: string;
  /** Top-level claim naming the tenant. Default `tenant_id`. */
  readonly tenantClaim?: string;
  /** Verified tokens kept in the LRU (0 disables it). Default 1,000. */
  readonly cacheMaxEntries?: number;
  /** Longest a verified token is trusted without re-verification, in ms. Default 60,000. */
  readonly cacheTtlMs?: number;
  /** Minimum time between JWKS refetches triggered by an unknown `kid`, in ms. Default 30,000 (jose's). */
  readonly jwksCooldownMs?: number;
  /** Age after which the JWKS is refetched before use, in ms. Default 600,000 (jose's). */
  readonly jwksCacheMaxAgeMs?: number;
  /** Timeout of one JWKS HTTP fetch, in ms. Default 5,000 (jose's). */
  readonly jwksTimeoutMs?: number;
}

export interface AuthenticateOptions {
  readonly signal?: AbortSignal;
}

export interface Authenticator {
  /**
   * Turns the raw `authorization` metadata value into the {@link Identity} a request runs as.
   * Throws SluiceError: UNAUTHENTICATED (missing/malformed/invalid/expired token; see
   * {@link AuthReason}), PERMISSION_DENIED (`SLUICE_ROLE_NOT_ALLOWED`), UNAVAILABLE (JWKS
   * unreachable), or CANCELLED/DEADLINE_EXCEEDED when `signal` aborts first.
   */
  authenticate(authorization: string | undefined, options?: AuthenticateOptions): Promise<Identity>;
  /** Drops cached verifications. Holds no sockets or timers, so calling it is optional. */
  close(): void;
}

const HMAC_ALGORITHMS: readonly string[] = ['HS256', 'HS384', 'HS512'];
const ASYMMETRIC_ALGORITHMS: readonly string[] = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
];
/** Longer than any sane JWT; refusing early keeps a huge header from costing base64 and JSON work. */
const MAX_TOKEN_LENGTH = 16 * 1024;
const BEARER = /^bearer[ \t]+([^\s]+)[ \t]*$/i;

/** Marks failures of the JWKS endpoint itself (network, status, body), as opposed to token problems. */
class JwksFetchError extends Error {}

/**
 * Builds the per-process token verifier: HS* tokens against `jwtSecret`, asymmetric tokens
 * against the JWKS at `jwksUrl` (fetched lazily, cached, refetched on an unknown `kid` at most
 * once per cooldown). A token's algorithm selects the key type, so an HS256 token is never
 * checked against public key material (algorithm confusion) and `alg: none` is never accepted.
 * Throws ConfigError for an inconsistent config (a default or anon role outside the allowlist,
 * a bad URL, a negative tolerance).
 */
export function createAuthenticator(config: AuthConfig): Authenticator {
  validate(config);
  const roleClaim = config.roleClaim ?? 'role';
  const tenantClaim = config.tenantClaim ?? 'tenant_id';
  const allowedRoles = new Set(config.allowedRoles);
  const cacheTtlMs = config.cacheTtlMs ?? 60_000;
  const cache = new TokenCache<Identity>(config.cacheMaxEntries ?? 1000);

  const verifyOptions: JWTVerifyOptions = {
    clockTolerance: config.clockToleranceSeconds,
    ...(config.audience === undefined
      ? {}
      : { audience: typeof config.audience === 'string' ? config.audience : [...config.audience] }),
    ...(config.issuer === undefined ? {} : { issuer: config.issuer }),
  };

  const hmacKey = config.jwtSecret === undefined ? undefined : hmacKeys(config.jwtSecret);
  const jwksKey = config.jwksUrl === undefined ? undefined : jwksKeys(config.jwksUrl, config);

  const anonIdentity: Identity | undefined = config.allowAnonymous
    ? deepFreeze({
        role: config.anonRole,
        claims: { role: config.anonRole },
        userId: undefined,
        tenantId: undefined,
      })
    : undefined;

  async function verify(token: string, signal: AbortSignal | undefined): Promise<JWTPayload> {
    let alg: unknown;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch (cause) {
      throw unauthenticated(AuthReason.tokenMalformed, 'The access token is malformed', { cause });
    }
    try {
      if (typeof alg === 'string' && HMAC_ALGORITHMS.includes(alg) && hmacKey) {
        const key = await hmacKey(alg);
        return (await jwtVerify(token, key, { ...verifyOptions, algorithms: [alg] })).payload;
      }
      if (typeof alg === 'string' && ASYMMETRIC_ALGORITHMS.includes(alg) && jwksKey) {
        const verified = jwtVerify(token, jwksKey, { ...verifyOptions, algorithms: [alg] });
        // The JWKS fetch is shared by concurrent callers, so one caller's abort only stops its wait.
        return (await raceAbort(verified, signal)).payload;
      }
    } catch (error) {
      throw toSluiceError(error);
    }
    throw unauthenticated(
      AuthReason.algorithmNotAllowed,
      'The access token is signed with an algorithm this server does not accept',
      { metadata: { alg: typeof alg === 'string' ? alg.slice(0, 20) : typeof alg } },
    );
  }

  function toIdentity(payload: JWTPayload): Identity {
    const claimed = payload[roleClaim];
    const role = claimed === undefined ? config.defaultRole : claimed;
    if (typeof role !== 'string' || !allowedRoles.has(role)) {
      throw new SluiceError('PERMISSION_DENIED', 'The access token claims a role that is not allowed', {
        reason: AuthReason.roleNotAllowed,
      });
    }
    const tenant = payload[tenantClaim];
    // `role` is set to the effective role so auth.role() in SQL agrees with the role the request runs as.
    return deepFreeze({
      role,
      claims: { ...payload, role },
      userId: typeof payload.sub === 'string' ? payload.sub : undefined,
      tenantId: typeof tenant === 'string' ? tenant : typeof tenant === 'number' ? String(tenant) : undefined,
    });
  }

  return {
    async authenticate(authorization, options = {}) {
      const { signal } = options;
      throwIfAborted(signal);
      if (authorization === undefined) {
        if (anonIdentity) return anonIdentity;
        throw unauthenticated(AuthReason.tokenMissing, 'An access token is required');
      }
      const token = parseBearer(authorization);
      const cached = cache.get(token, Date.now());
      if (cached) return cached;

      const payload = await verify(token, signal);
      const identity = toIdentity(payload);
      // Trust the result until the token expires or the TTL ends, whichever is first; after
      // that it is verified again, so an expired token is rejected even if it was hot.
      const now = Date.now();
      const expiresAt =
        typeof payload.exp === 'number' ? Math.min(payload.exp * 1000, now + cacheTtlMs) : now + cacheTtlMs;
      cache.set(token, identity, expiresAt);
      return identity;
    },
    close() {
      cache.clear();
    },
  };
}

function parseBearer(authorization: string): string {
  const token = authorization.length <= MAX_TOKEN_LENGTH + 16 ? BEARER.exec(authorization)?.[1] : undefined;
  if (token === undefined || token.length > MAX_TOKEN_LENGTH) {
    throw unauthenticated(AuthReason.tokenMalformed, 'The authorization header must be "Bearer <token>"');
  }
  return token;
}

/** HMAC keys imported once per algorithm: jose would otherwise import the raw secret on every call. */
function hmacKeys(secret: string): (alg: string) => Promise<CryptoKey> {
  const raw = new TextEncoder().encode(secret);
  const keys = new Map<string, Promise<CryptoKey>>();
  return (alg) => {
    let key = keys.get(alg);
    if (key === undefined) {
      key = crypto.subtle.importKey('raw', raw, { name: 'HMAC', hash: `SHA-${alg.slice(2)}` }, false, [
        'verify',
      ]);
      keys.set(alg, key);
    }
    return key;
  };
}

function jwksKeys(url: string, config: AuthConfig): JWTVerifyGetKey {
  const remote = createRemoteJWKSet(new URL(url), {
    ...(config.jwksCooldownMs === undefined ? {} : { cooldownDuration: config.jwksCooldownMs }),
    ...(config.jwksCacheMaxAgeMs === undefined ? {} : { cacheMaxAge: config.jwksCacheMaxAgeMs }),
    ...(config.jwksTimeoutMs === undefined ? {} : { timeoutDuration: config.jwksTimeoutMs }),
  });
  return async (header, token) => {
    try {
      return await remote(header, token);
    } catch (error) {
      // jose rethrows these for the token (no key for its kid/alg); the multiple-keys error
      // carries the candidates jwtVerify tries, so it must pass through unchanged.
      if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys) {
        throw error;
      }
      throw new JwksFetchError('JWKS fetch failed', { cause: error });
    }
  };
}

function toSluiceError(error: unknown): SluiceError {
  if (error instanceof SluiceError) return error;
  if (error instanceof JwksFetchError) {
    return new SluiceError('UNAVAILABLE', 'The token signing keys could not be fetched', {
      reason: AuthReason.jwksUnavailable,
      cause: error.cause,
    });
  }
  const options = { cause: error };
  if (error instanceof errors.JWTExpired) {
    return unauthenticated(AuthReason.tokenExpired, 'The access token has expired', options);
  }
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.claim === 'nbf' && error.reason === 'check_failed') {
      return unauthenticated(AuthReason.tokenNotYetValid, 'The access token is not valid yet', options);
    }
    const claim = error.claim.slice(0, 40);
    return unauthenticated(AuthReason.claimInvalid, `The access token's "${claim}" claim is not accepted`, {
      ...options,
      metadata: { claim },
    });
  }
  if (error instanceof errors.JWSSignatureVerificationFailed) {
    return unauthenticated(AuthReason.tokenInvalid, 'The access token signature is invalid', options);
  }
  if (error instanceof errors.JOSEAlgNotAllowed) {
    return unauthenticated(
      AuthReason.algorithmNotAllowed,
      'The access token is signed with an algorithm this server does not accept',
      options,
    );
  }
  if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys) {
    return unauthenticated(AuthReason.keyNotFound, 'No signing key matches the access token', options);
  }
  if (error instanceof errors.JWSInvalid || error instanceof errors.JWTInvalid) {
    return unauthenticated(AuthReason.tokenMalformed, 'The access token is malformed', options);
  }
  if (error instanceof errors.JOSEError) {
    return unauthenticated(AuthReason.tokenInvalid, 'The access token is invalid', options);
  }
  return new SluiceError('INTERNAL', 'Authentication failed', options);
}

/** Settles with `promise`, or rejects with the abort error as soon as `signal` aborts. */
function raceAbort<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortError(signal));
    if (signal.aborted) {
      onAbort();
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

function validate(config: AuthConfig): void {
  const problems: string[] = [];
  if (config.jwtSecret !== undefined && config.jwtSecret.length === 0) problems.push('jwtSecret is empty');
  if (config.jwksUrl !== undefined) {
    let url: URL | undefined;
    try {
      url = new URL(config.jwksUrl);
    } catch {
      problems.push('jwksUrl is not a URL');
    }
    if (url && url.protocol !== 'https:' && url.protocol !== 'http:') {
      problems.push('jwksUrl must be an http(s) URL');
    }
  }
  if (!Number.isFinite(config.clockToleranceSeconds) || config.clockToleranceSeconds < 0) {
    problems.push('clockToleranceSeconds must be a non-negative number');
  }
  if (config.allowedRoles.length === 0) problems.push('allowedRoles is empty');
  if (!config.allowedRoles.includes(config.defaultRole)) {
    problems.push(`defaultRole "${config.defaultRole}" is not in allowedRoles`);
  }
  if (config.allowAnonymous && !config.allowedRoles.includes(config.anonRole)) {
    problems.push(`anonRole "${config.anonRole}" is not in allowedRoles`);
  }
  for (const [name, value] of [
    ['cacheMaxEntries', config.cacheMaxEntries],
    ['cacheTtlMs', config.cacheTtlMs],
    ['jwksCooldownMs', config.jwksCooldownMs],
    ['jwksCacheMaxAgeMs', config.jwksCacheMaxAgeMs],
    ['jwksTimeoutMs', config.jwksTimeoutMs],
  ] as const) {
    if (value !== undefined && !(Number.isInteger(value) && value >= 0)) {
      problems.push(`${name} must be a non-negative integer`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
}
