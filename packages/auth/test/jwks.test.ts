import { type CryptoKey, exportJWK, exportSPKI, generateKeyPair, type JWK, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuthConfig, createAuthenticator, signToken } from '../src/index';
import { authConfig, expectFailure, SECRET } from './helpers';
import { type JwksServer, startJwksServer } from './jwks-server';

interface TestKey {
  readonly kid: string;
  readonly alg: string;
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
  readonly jwk: JWK;
}

async function testKey(alg: 'RS256' | 'ES256', kid: string): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { kid, alg, privateKey, publicKey, jwk };
}

function signWith(key: TestKey, claims: Record<string, unknown>, kid = key.kid): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: key.alg, kid, typ: 'JWT' })
    .setIssuedAt()
    .setExpirationTime('5m')
    .sign(key.privateKey);
}

const bearer = (token: string) => `Bearer ${token}`;

describe('asymmetric tokens from a JWKS URL', () => {
  let rsa: TestKey;
  let ec: TestKey;
  let server: JwksServer;
  let jwksOnly: (overrides?: Partial<AuthConfig>) => AuthConfig;

  beforeAll(async () => {
    [rsa, ec] = await Promise.all([testKey('RS256', 'rsa-1'), testKey('ES256', 'ec-1')]);
    server = await startJwksServer([rsa.jwk, ec.jwk]);
    jwksOnly = (overrides = {}) =>
      authConfig({ jwtSecret: undefined, jwksUrl: server.url, audience: 'sluice', ...overrides });
  });
  afterAll(async () => {
    await server.close();
  });

  it('accepts RS256 and ES256 tokens and fetches the key set once', async () => {
    const before = server.requests();
    const auth = createAuthenticator(jwksOnly());
    const fromRsa = await auth.authenticate(
      bearer(await signWith(rsa, { sub: 'r', aud: 'sluice', tenant_id: 't1' })),
    );
    expect(fromRsa).toMatchObject({ role: 'authenticated', userId: 'r', tenantId: 't1' });
    const fromEc = await auth.authenticate(
      bearer(await signWith(ec, { sub: 'e', aud: 'sluice', role: 'service_role' })),
    );
    expect(fromEc).toMatchObject({ role: 'service_role', userId: 'e' });
    await auth.authenticate(bearer(await signWith(rsa, { sub: 'r2', aud: 'sluice' })));
    expect(server.requests() - before).toBe(1);
  });

  it('applies the role allowlist to JWKS tokens too', async () => {
    const auth = createAuthenticator(jwksOnly());
    const token = await signWith(rsa, { sub: 'r', aud: 'sluice', role: 'postgres' });
    await expectFailure(auth.authenticate(bearer(token)), 'PERMISSION_DENIED', 'SLUICE_ROLE_NOT_ALLOWED');
  });

  it('checks the audience of JWKS tokens', async () => {
    const auth = createAuthenticator(jwksOnly());
    const token = await signWith(ec, { sub: 'e', aud: 'someone-else' });
    await expectFailure(auth.authenticate(bearer(token)), 'UNAUTHENTICATED', 'SLUICE_TOKEN_CLAIM_INVALID');
  });

  it('rejects a token signed by another key under a served kid', async () => {
    const auth = createAuthenticator(jwksOnly());
    const impostor = await testKey('RS256', 'rsa-1');
    await expectFailure(
      auth.authenticate(bearer(await signWith(impostor, { sub: 'r', aud: 'sluice' }))),
      'UNAUTHENTICATED',
      'SLUICE_TOKEN_INVALID',
    );
  });

  it('rejects an ES256 token that names the kid of an RSA key', async () => {
    const auth = createAuthenticator(jwksOnly());
    const token = await signWith(ec, { sub: 'e', aud: 'sluice' }, 'rsa-1');
    await expectFailure(auth.authenticate(bearer(token)), 'UNAUTHENTICATED', 'SLUICE_TOKEN_KEY_NOT_FOUND');
  });

  it('rejects an HS256 token signed with the RSA public key as its secret (algorithm confusion)', async () => {
    const pem = await exportSPKI(rsa.publicKey);
    const claims = { sub: 'attacker', aud: 'sluice', role: 'service_role' };
    const confused = await signToken(pem, claims, { expiresIn: 60 });
    // Header without kid, and with the RSA key's kid: neither may reach the RSA key.
    const confusedWithKid = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'HS256', kid: 'rsa-1' })
      .setExpirationTime('1m')
      .sign(new TextEncoder().encode(pem));
    const jwkSecret = await signToken(JSON.stringify(rsa.jwk), claims, { expiresIn: 60 });

    const auth = createAuthenticator(jwksOnly());
    for (const token of [confused, confusedWithKid, jwkSecret]) {
      await expectFailure(
        auth.authenticate(bearer(token)),
        'UNAUTHENTICATED',
        'SLUICE_TOKEN_ALGORITHM_NOT_ALLOWED',
      );
    }
    // With a shared secret configured as well, HS256 goes to that secret only, and fails there.
    const both = createAuthenticator(jwksOnly({ jwtSecret: SECRET }));
    for (const token of [confused, confusedWithKid]) {
      await expectFailure(both.authenticate(bearer(token)), 'UNAUTHENTICATED', 'SLUICE_TOKEN_INVALID');
    }
    expect(
      (await both.authenticate(bearer(await signToken(SECRET, { sub: 'h', aud: 'sluice' })))).userId,
    ).toBe('h');
    expect((await both.authenticate(bearer(await signWith(rsa, { sub: 'r', aud: 'sluice' })))).userId).toBe(
      'r',
    );
  });

  it('rejects RS256 tokens when only a shared secret is configured', async () => {
    const auth = createAuthenticator(authConfig());
    const token = await signWith(rsa, { sub: 'r' });
    await expectFailure(
      auth.authenticate(bearer(token)),
      'UNAUTHENTICATED',
      'SLUICE_TOKEN_ALGORITHM_NOT_ALLOWED',
    );
  });
});

describe('JWKS key rotation and availability', () => {
  it('accepts a token with a new kid after the server rotates its keys', async () => {
    const [oldKey, newKey] = await Promise.all([testKey('RS256', 'old'), testKey('ES256', 'new')]);
    const server = await startJwksServer([oldKey.jwk]);
    try {
      const auth = createAuthenticator(
        authConfig({ jwtSecret: undefined, jwksUrl: server.url, jwksCooldownMs: 0 }),
      );
      expect((await auth.authenticate(bearer(await signWith(oldKey, { sub: 'o' })))).userId).toBe('o');
      expect(server.requests()).toBe(1);

      server.setKeys([newKey.jwk]);
      expect((await auth.authenticate(bearer(await signWith(newKey, { sub: 'n' })))).userId).toBe('n');
      expect(server.requests()).toBe(2);
      // The retired key is gone from the set: a fresh token under it no longer verifies.
      await expectFailure(
        auth.authenticate(bearer(await signWith(oldKey, { sub: 'o2' }))),
        'UNAUTHENTICATED',
        'SLUICE_TOKEN_KEY_NOT_FOUND',
      );
    } finally {
      await server.close();
    }
  });

  it('does not refetch for unknown kids during the cooldown', async () => {
    const [known, unknown] = await Promise.all([testKey('RS256', 'known'), testKey('RS256', 'unknown')]);
    const server = await startJwksServer([known.jwk]);
    try {
      const auth = createAuthenticator(authConfig({ jwtSecret: undefined, jwksUrl: server.url }));
      await auth.authenticate(bearer(await signWith(known, { sub: 'k' })));
      for (let i = 0; i < 5; i += 1) {
        await expectFailure(
          auth.authenticate(bearer(await signWith(unknown, { sub: `u${i}` }))),
          'UNAUTHENTICATED',
          'SLUICE_TOKEN_KEY_NOT_FOUND',
        );
      }
      expect(server.requests()).toBe(1);
    } finally {
      await server.close();
    }
  });

  it('reports UNAVAILABLE when the JWKS server is down', async () => {
    const key = await testKey('RS256', 'k');
    const server = await startJwksServer([key.jwk]);
    const url = server.url;
    await server.close();
    const auth = createAuthenticator(authConfig({ jwtSecret: undefined, jwksUrl: url }));
    const error = await expectFailure(
      auth.authenticate(bearer(await signWith(key, { sub: 'k' }))),
      'UNAVAILABLE',
      'SLUICE_JWKS_UNAVAILABLE',
    );
    expect(error.message).not.toContain('127.0.0.1');
  });

  it('reports UNAVAILABLE when the JWKS server answers with an error or times out', async () => {
    const key = await testKey('ES256', 'k');
    const server = await startJwksServer([key.jwk]);
    try {
      server.setFailure(503);
      const auth = createAuthenticator(
        authConfig({ jwtSecret: undefined, jwksUrl: server.url, jwksTimeoutMs: 200, jwksCooldownMs: 0 }),
      );
      const token = await signWith(key, { sub: 'k' });
      await expectFailure(auth.authenticate(bearer(token)), 'UNAVAILABLE', 'SLUICE_JWKS_UNAVAILABLE');
      server.setFailure('hang');
      await expectFailure(auth.authenticate(bearer(token)), 'UNAVAILABLE', 'SLUICE_JWKS_UNAVAILABLE');
      // Once the server recovers, the same authenticator works again.
      server.setFailure(undefined);
      expect((await auth.authenticate(bearer(token))).userId).toBe('k');
    } finally {
      await server.close();
    }
  });

  it('stops waiting for a slow JWKS fetch when the call is cancelled', async () => {
    const key = await testKey('RS256', 'k');
    const server = await startJwksServer([key.jwk]);
    try {
      server.setFailure('hang');
      const auth = createAuthenticator(authConfig({ jwtSecret: undefined, jwksUrl: server.url }));
      const started = Date.now();
      await expectFailure(
        auth.authenticate(bearer(await signWith(key, { sub: 'k' })), { signal: AbortSignal.timeout(100) }),
        'DEADLINE_EXCEEDED',
        'SLUICE_DEADLINE_EXCEEDED',
      );
      expect(Date.now() - started).toBeLessThan(2000);
    } finally {
      await server.close();
    }
  });
});
