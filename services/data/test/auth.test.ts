import { AuthReason, signToken } from '@sluice/auth';
import { Metadata, Status } from 'nice-grpc';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectRejection } from './expect-rejection';
import { startStack, TEST_JWT_SECRET, type TestStack, USERS } from './helpers';
import { and, eq, V } from './wire-values';

// One stack for the whole file: anonymous access off and an audience required, so every way a
// token can be wrong is reachable.
const AUDIENCE = 'sluice-test';

let stack: TestStack;
let admin: pg.Client;

const now = () => Math.floor(Date.now() / 1000);
const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');

/** A token for alice with the right audience, plus `claims`, signed with `secret`. */
function aliceToken(claims: Record<string, unknown> = {}, secret = TEST_JWT_SECRET): Promise<string> {
  return signToken(
    secret,
    { sub: USERS.alice, role: 'authenticated', aud: AUDIENCE, ...claims },
    { expiresIn: 600 },
  );
}

/** A Select of post 1's title that the authorization `header` (or none) must make fail. */
function selectWith(header: string | undefined) {
  const client = stack.client();
  const metadata = Metadata(header === undefined ? {} : { authorization: header });
  return client.select({ table: 'posts', columns: ['title'], filter: eq('id', V.int(1)) }, { metadata });
}

async function postOneTitle(): Promise<string> {
  const { rows } = await admin.query('select title from public.posts where id = 1');
  return rows[0].title;
}

beforeAll(async () => {
  stack = await startStack({ ALLOW_ANONYMOUS: 'false', JWT_AUDIENCE: AUDIENCE });
  admin = new pg.Client({ connectionString: stack.db.url });
  await admin.connect();
});

afterAll(async () => {
  await admin?.end();
  await stack?.close();
});

describe('tokens', () => {
  it('a valid token with the right audience works', async () => {
    const res = await stack.client(await aliceToken()).select({ table: 'posts', columns: ['id'], limit: 1 });
    expect(res.result?.rows.length).toBe(1);
  });

  it('no token, with anonymous access off, is UNAUTHENTICATED', async () => {
    await expectRejection(selectWith(undefined), {
      code: Status.UNAUTHENTICATED,
      reason: AuthReason.tokenMissing,
    });
  });

  it('an expired token', async () => {
    // Signed without expiresIn: signToken would otherwise replace the exp claim.
    const token = await signToken(TEST_JWT_SECRET, {
      sub: USERS.alice,
      role: 'authenticated',
      aud: AUDIENCE,
      iat: now() - 7200,
      exp: now() - 3600,
    });
    await expectRejection(selectWith(`Bearer ${token}`), {
      code: Status.UNAUTHENTICATED,
      reason: AuthReason.tokenExpired,
    });
  });

  it('a wrong or missing audience', async () => {
    const wrong = await expectRejection(selectWith(`Bearer ${await aliceToken({ aud: 'someone-else' })}`), {
      code: Status.UNAUTHENTICATED,
      reason: AuthReason.claimInvalid,
    });
    expect(wrong.metadata.claim).toBe('aud');
    // stack.token() signs without an audience.
    await expectRejection(selectWith(`Bearer ${await stack.token('alice')}`), {
      code: Status.UNAUTHENTICATED,
      reason: AuthReason.claimInvalid,
    });
  });

  it('a token signed with another secret (forged)', async () => {
    const forged = await aliceToken({}, 'another-secret-that-is-long-enough-for-hs256!!');
    await expectRejection(selectWith(`Bearer ${forged}`), {
      code: Status.UNAUTHENTICATED,
      reason: AuthReason.tokenInvalid,
    });
    // A valid token whose payload was swapped for service_role keeps the old signature.
    const [header, , signature] = (await aliceToken()).split('.');
    const tampered = `${header}.${b64({ role: 'service_role', aud: AUDIENCE, exp: now() + 600 })}.${signature}`;
    await expectRejection(selectWith(`Bearer ${tampered}`), {
      code: Status.UNAUTHENTICATED,
      reason: AuthReason.tokenInvalid,
    });
  });

  it('a hand-built alg "none" token', async () => {
    const payload = b64({ sub: USERS.alice, role: 'service_role', aud: AUDIENCE, exp: now() + 600 });
    for (const alg of ['none', 'None', 'NONE']) {
      const token = `${b64({ alg, typ: 'JWT' })}.${payload}.`;
      await expectRejection(selectWith(`Bearer ${token}`), {
        code: Status.UNAUTHENTICATED,
        reason: AuthReason.algorithmNotAllowed,
      });
    }
  });

  it('garbage authorization headers', async () => {
    // HTTP/2 drops a header value with trailing whitespace before the server sees it: the call
    // then has no token at all, which (anonymous access off here) is still UNAUTHENTICATED.
    await expectRejection(selectWith('Bearer '), { code: Status.UNAUTHENTICATED });
    for (const header of [
      '',
      'Bearer',
      `Basic ${Buffer.from('alice:secret').toString('base64')}`,
      'Bearer not-a-jwt',
      'Bearer a.b.c',
      'Bearer two tokens',
      `Bearer ${'x'.repeat(20_000)}`,
    ]) {
      await expectRejection(selectWith(header), {
        code: Status.UNAUTHENTICATED,
        reason: AuthReason.tokenMalformed,
      });
    }
  });
});

describe('roles', () => {
  it('a token claiming a superuser or pg_* role is refused and nothing runs', async () => {
    const before = await postOneTitle();
    for (const role of [
      'postgres',
      'pg_read_server_files',
      'sluice_authenticator',
      'pg_write_server_files',
    ]) {
      const token = await aliceToken({ role });
      const client = stack.client(token);
      await expectRejection(
        client.update({
          table: 'posts',
          set: [{ column: 'title', value: V.str(`as ${role}`) }],
          filter: and(),
        }),
        { code: Status.PERMISSION_DENIED, reason: AuthReason.roleNotAllowed },
      );
      await expectRejection(
        client.call({ function: 'fail_with', args: [{ name: 'msg', value: V.str('ran') }] }),
        {
          code: Status.PERMISSION_DENIED,
          reason: AuthReason.roleNotAllowed,
        },
      );
    }
    expect(await postOneTitle()).toBe(before);
  });

  it('service_role cannot reach functions or tables outside the exposed schemas', async () => {
    const service = stack.client(await stack.token('service', { aud: AUDIENCE }));
    await expectRejection(
      service.call({
        schema: 'pg_catalog',
        function: 'pg_read_file',
        args: [{ name: 'filename', value: V.str('postgresql.conf') }],
      }),
      { code: Status.INVALID_ARGUMENT, reason: 'SLUICE_UNKNOWN_FUNCTION' },
    );
    // The same name without a schema is looked up in the exposed schemas only.
    await expectRejection(service.call({ function: 'pg_read_file' }), {
      code: Status.INVALID_ARGUMENT,
      reason: 'SLUICE_UNKNOWN_FUNCTION',
    });
    await expectRejection(service.select({ schema: 'pg_catalog', table: 'pg_authid' }), {
      code: Status.INVALID_ARGUMENT,
      reason: 'SLUICE_UNKNOWN_TABLE',
    });
    await expectRejection(service.select({ schema: 'auth', table: 'users' }), {
      code: Status.INVALID_ARGUMENT,
      reason: 'SLUICE_UNKNOWN_TABLE',
    });
  });
});

describe('request ids', () => {
  it('the server sets x-request-id on every response', async () => {
    let header: Metadata | undefined;
    const client = stack.client(await aliceToken());
    await client.select({ table: 'posts', columns: ['id'], limit: 1 }, { onHeader: (h) => (header = h) });
    expect(header?.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    // A different id for the next call.
    let second: Metadata | undefined;
    await client.select({ table: 'posts', columns: ['id'], limit: 1 }, { onHeader: (h) => (second = h) });
    expect(second?.get('x-request-id')).not.toBe(header?.get('x-request-id'));
  });

  it('echoes the id a client sends, on success and on error', async () => {
    const metadata = Metadata({ authorization: `Bearer ${await aliceToken()}`, 'x-request-id': 'req-42' });
    let header: Metadata | undefined;
    await stack
      .client()
      .select({ table: 'posts', columns: ['id'], limit: 1 }, { metadata, onHeader: (h) => (header = h) });
    expect(header?.get('x-request-id')).toBe('req-42');

    let errorHeader: Metadata | undefined;
    let trailer: Metadata | undefined;
    await expectRejection(
      stack
        .client()
        .select(
          { table: 'nope' },
          { metadata, onHeader: (h) => (errorHeader = h), onTrailer: (t) => (trailer = t) },
        ),
      { code: Status.INVALID_ARGUMENT, reason: 'SLUICE_UNKNOWN_TABLE' },
    );
    expect(errorHeader?.get('x-request-id') ?? trailer?.get('x-request-id')).toBe('req-42');
  });
});
