import { ConfigError } from '@sluice/core';
import { CompactSign, SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { AuthReason, createAuthenticator, signToken } from '../src/index';
import { authConfig, expectFailure, handBuiltToken, nowSeconds, SECRET } from './helpers';

const bearer = (token: string) => `Bearer ${token}`;

describe('HS256 tokens', () => {
  const auth = createAuthenticator(authConfig({ audience: 'sluice', issuer: 'https://issuer.test' }));
  const sign = (claims: Record<string, unknown>, secret = SECRET) =>
    signToken(secret, claims, { expiresIn: '5m', audience: 'sluice', issuer: 'https://issuer.test' });

  it('accepts a valid token and maps role, sub and tenant', async () => {
    const token = await sign({
      sub: 'user-1',
      role: 'authenticated',
      tenant_id: 'tenant-a',
      email: 'a@x.test',
    });
    const identity = await auth.authenticate(bearer(token));
    expect(identity.role).toBe('authenticated');
    expect(identity.userId).toBe('user-1');
    expect(identity.tenantId).toBe('tenant-a');
    expect(identity.claims).toMatchObject({
      sub: 'user-1',
      role: 'authenticated',
      email: 'a@x.test',
      aud: 'sluice',
    });
    expect(Object.isFrozen(identity.claims)).toBe(true);
  });

  it('treats the Bearer scheme case-insensitively', async () => {
    const token = await sign({ sub: 'user-2', role: 'service_role' });
    expect((await auth.authenticate(`bearer ${token}`)).role).toBe('service_role');
    expect((await auth.authenticate(`BEARER  ${token}`)).role).toBe('service_role');
  });

  it('uses the default role when the token has no role claim, and says so in the claims', async () => {
    const identity = await auth.authenticate(bearer(await sign({ sub: 'user-3' })));
    expect(identity.role).toBe('authenticated');
    expect(identity.claims.role).toBe('authenticated');
    expect(identity.tenantId).toBeUndefined();
  });

  it('rejects a role outside the allowlist with PERMISSION_DENIED', async () => {
    for (const role of ['postgres', 'pg_read_server_files', 'supabase_admin', ['service_role'], 42, null]) {
      await expectFailure(
        auth.authenticate(bearer(await sign({ sub: 'user-4', role }))),
        'PERMISSION_DENIED',
        AuthReason.roleNotAllowed,
      );
    }
    expect(AuthReason.roleNotAllowed).toBe('SLUICE_ROLE_NOT_ALLOWED');
  });

  it('rejects an expired token, but allows skew within the clock tolerance', async () => {
    const expired = await signToken(
      SECRET,
      { sub: 'u', exp: nowSeconds() - 120 },
      { audience: 'sluice', issuer: 'https://issuer.test' },
    );
    await expectFailure(auth.authenticate(bearer(expired)), 'UNAUTHENTICATED', 'SLUICE_TOKEN_EXPIRED');

    const tolerant = createAuthenticator(authConfig({ clockToleranceSeconds: 30 }));
    const justExpired = await signToken(SECRET, { sub: 'u', exp: nowSeconds() - 10 });
    expect((await tolerant.authenticate(bearer(justExpired))).userId).toBe('u');
    await expectFailure(tolerant.authenticate(bearer(expired)), 'UNAUTHENTICATED', 'SLUICE_TOKEN_EXPIRED');
  });

  it('rejects a token whose nbf is in the future', async () => {
    const token = await sign({ sub: 'u', nbf: nowSeconds() + 3600 });
    await expectFailure(auth.authenticate(bearer(token)), 'UNAUTHENTICATED', AuthReason.tokenNotYetValid);
  });

  it('rejects a wrong or missing audience', async () => {
    const wrong = await signToken(
      SECRET,
      { sub: 'u' },
      { expiresIn: 60, audience: 'other', issuer: 'https://issuer.test' },
    );
    const error = await expectFailure(
      auth.authenticate(bearer(wrong)),
      'UNAUTHENTICATED',
      'SLUICE_TOKEN_CLAIM_INVALID',
    );
    expect(error.metadata).toEqual({ claim: 'aud' });
    const missing = await signToken(SECRET, { sub: 'u' }, { expiresIn: 60, issuer: 'https://issuer.test' });
    await expectFailure(auth.authenticate(bearer(missing)), 'UNAUTHENTICATED', 'SLUICE_TOKEN_CLAIM_INVALID');
  });

  it('rejects a wrong issuer', async () => {
    const token = await signToken(
      SECRET,
      { sub: 'u' },
      { expiresIn: 60, audience: 'sluice', issuer: 'https://evil.test' },
    );
    const error = await expectFailure(
      auth.authenticate(bearer(token)),
      'UNAUTHENTICATED',
      'SLUICE_TOKEN_CLAIM_INVALID',
    );
    expect(error.metadata).toEqual({ claim: 'iss' });
  });

  it('rejects a token signed with another secret', async () => {
    const forged = await sign(
      { sub: 'u', role: 'service_role' },
      'another-secret-of-at-least-thirty-two-chars',
    );
    await expectFailure(auth.authenticate(bearer(forged)), 'UNAUTHENTICATED', 'SLUICE_TOKEN_INVALID');
  });

  it('rejects a genuine signature over a tampered payload', async () => {
    const genuine = await sign({ sub: 'u', role: 'authenticated' });
    const [header, , signature] = genuine.split('.');
    const payload = Buffer.from(
      JSON.stringify({
        sub: 'u',
        role: 'service_role',
        aud: 'sluice',
        iss: 'https://issuer.test',
        exp: nowSeconds() + 60,
      }),
    ).toString('base64url');
    await expectFailure(
      auth.authenticate(bearer(`${header}.${payload}.${signature}`)),
      'UNAUTHENTICATED',
      'SLUICE_TOKEN_INVALID',
    );
  });

  it('rejects alg: none tokens, with or without a signature segment', async () => {
    const claims = {
      sub: 'u',
      role: 'service_role',
      aud: 'sluice',
      iss: 'https://issuer.test',
      exp: nowSeconds() + 60,
    };
    for (const alg of ['none', 'None', 'NONE']) {
      await expectFailure(
        auth.authenticate(bearer(handBuiltToken({ alg, typ: 'JWT' }, claims))),
        'UNAUTHENTICATED',
        'SLUICE_TOKEN_ALGORITHM_NOT_ALLOWED',
      );
    }
    await expectFailure(
      auth.authenticate(bearer(handBuiltToken({ alg: 'none' }, claims, 'c2lnbmF0dXJl'))),
      'UNAUTHENTICATED',
      'SLUICE_TOKEN_ALGORITHM_NOT_ALLOWED',
    );
  });

  it('accepts HS384 and HS512 with the same secret', async () => {
    for (const alg of ['HS384', 'HS512']) {
      const token = await new SignJWT({ sub: alg, aud: 'sluice', iss: 'https://issuer.test' })
        .setProtectedHeader({ alg })
        .setExpirationTime('1m')
        .sign(new TextEncoder().encode(SECRET));
      expect((await auth.authenticate(bearer(token))).userId).toBe(alg);
    }
  });

  it('rejects garbage headers and tokens as malformed', async () => {
    const valid = await sign({ sub: 'u' });
    const garbage = [
      '',
      'Bearer',
      'Bearer ',
      `Basic ${valid}`,
      valid,
      `Bearer ${valid} extra`,
      'Bearer not-a-jwt',
      'Bearer a.b.c',
      `Bearer ${handBuiltToken({ alg: 'HS256' }, {}).replace(/\..*$/, '')}`,
      `Bearer ${'x'.repeat(20_000)}`,
      // Correctly signed, but the payload is not a JSON object.
      `Bearer ${await new CompactSign(new TextEncoder().encode('not-json')).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(SECRET))}`,
    ];
    for (const header of garbage) {
      await expectFailure(auth.authenticate(header), 'UNAUTHENTICATED', 'SLUICE_TOKEN_MALFORMED');
    }
  });
});

describe('anonymous access', () => {
  it('gives the anon role when no header is sent and anonymous access is on', async () => {
    const auth = createAuthenticator(authConfig({ allowAnonymous: true }));
    const identity = await auth.authenticate(undefined);
    expect(identity).toEqual({
      role: 'anon',
      claims: { role: 'anon' },
      userId: undefined,
      tenantId: undefined,
    });
  });

  it('rejects a missing header when anonymous access is off', async () => {
    const auth = createAuthenticator(authConfig({ allowAnonymous: false }));
    await expectFailure(auth.authenticate(undefined), 'UNAUTHENTICATED', 'SLUICE_TOKEN_MISSING');
  });

  it('still verifies a sent token when anonymous access is on (a bad token never falls back to anon)', async () => {
    const auth = createAuthenticator(authConfig({ allowAnonymous: true }));
    const forged = await signToken('wrong-secret-wrong-secret-wrong-secret', { sub: 'u' });
    await expectFailure(auth.authenticate(`Bearer ${forged}`), 'UNAUTHENTICATED', 'SLUICE_TOKEN_INVALID');
  });

  it('accepts no tokens at all with neither a secret nor a JWKS URL', async () => {
    const auth = createAuthenticator(authConfig({ jwtSecret: undefined }));
    expect((await auth.authenticate(undefined)).role).toBe('anon');
    const token = await signToken(SECRET, { sub: 'u' });
    await expectFailure(
      auth.authenticate(`Bearer ${token}`),
      'UNAUTHENTICATED',
      'SLUICE_TOKEN_ALGORITHM_NOT_ALLOWED',
    );
  });
});

describe('verification cache', () => {
  it('returns the cached identity for a hot token', async () => {
    const auth = createAuthenticator(authConfig());
    const token = await signToken(SECRET, { sub: 'hot' }, { expiresIn: 60 });
    const first = await auth.authenticate(`Bearer ${token}`);
    expect(await auth.authenticate(`Bearer ${token}`)).toBe(first);
    expect(await auth.authenticate(`bearer ${token}`)).toBe(first);
  });

  it('rejects a cached token once it has expired', async () => {
    const auth = createAuthenticator(authConfig());
    const exp = nowSeconds() + 1;
    const token = await signToken(SECRET, { sub: 'short', exp });
    expect((await auth.authenticate(`Bearer ${token}`)).userId).toBe('short');
    await new Promise((resolve) => setTimeout(resolve, exp * 1000 - Date.now() + 50));
    await expectFailure(auth.authenticate(`Bearer ${token}`), 'UNAUTHENTICATED', 'SLUICE_TOKEN_EXPIRED');
  });

  it('is bounded: the least recently used token is evicted', async () => {
    const auth = createAuthenticator(authConfig({ cacheMaxEntries: 2 }));
    const [a, b, c] = await Promise.all(
      ['a', 'b', 'c'].map((sub) => signToken(SECRET, { sub }, { expiresIn: 60 })),
    );
    const idA = await auth.authenticate(`Bearer ${a}`);
    const idB = await auth.authenticate(`Bearer ${b}`);
    expect(await auth.authenticate(`Bearer ${a}`)).toBe(idA); // a is now the most recent
    await auth.authenticate(`Bearer ${c}`); // evicts b
    expect(await auth.authenticate(`Bearer ${a}`)).toBe(idA);
    const idB2 = await auth.authenticate(`Bearer ${b}`);
    expect(idB2).not.toBe(idB);
    expect(idB2).toEqual(idB);
  });

  it('never caches a rejected role', async () => {
    const auth = createAuthenticator(authConfig());
    const token = await signToken(SECRET, { sub: 'u', role: 'postgres' }, { expiresIn: 60 });
    for (let i = 0; i < 2; i += 1) {
      await expectFailure(
        auth.authenticate(`Bearer ${token}`),
        'PERMISSION_DENIED',
        'SLUICE_ROLE_NOT_ALLOWED',
      );
    }
  });
});

describe('cancellation and configuration', () => {
  it('honours an already aborted signal', async () => {
    const auth = createAuthenticator(authConfig());
    const controller = new AbortController();
    controller.abort();
    await expectFailure(
      auth.authenticate(undefined, { signal: controller.signal }),
      'CANCELLED',
      'SLUICE_CANCELLED',
    );
  });

  it('refuses an inconsistent configuration', () => {
    expect(() => createAuthenticator(authConfig({ defaultRole: 'postgres' }))).toThrow(ConfigError);
    expect(() => createAuthenticator(authConfig({ anonRole: 'postgres' }))).toThrow(ConfigError);
    expect(() => createAuthenticator(authConfig({ jwtSecret: '' }))).toThrow(ConfigError);
    expect(() => createAuthenticator(authConfig({ jwksUrl: 'file:///etc/passwd' }))).toThrow(ConfigError);
    expect(() => createAuthenticator(authConfig({ clockToleranceSeconds: -1 }))).toThrow(ConfigError);
  });

  it('signToken with a numeric expiresIn means seconds from now', async () => {
    const auth = createAuthenticator(authConfig());
    const token = await signToken(SECRET, { sub: 'n' }, { expiresIn: 600 });
    const { claims } = await auth.authenticate(`Bearer ${token}`);
    expect(claims.exp).toBeGreaterThanOrEqual(nowSeconds() + 598);
    expect(claims.exp).toBeLessThanOrEqual(nowSeconds() + 600);
    expect(claims.iat).toBeTypeOf('number');
  });
});
