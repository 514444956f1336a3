import { signToken } from '@sluice/auth';
import { createLogger } from '@sluice/observability';
import { data } from '@sluice/proto';
import { ACME, createTestDatabase, TEST_JWT_SECRET, type TestDatabase, USERS } from '@sluice/testing';
import { createChannel, createClient, Metadata, Status } from 'nice-grpc';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadDataConfig } from '../src/config';
import { type DataServer, startDataServer } from '../src/server';

// An INTERNAL error is logged with who called (role, user, tenant), so "the errors of tenant X"
// finds it by itself, not only through the call's `rpc` line; never with the token.

let db: TestDatabase;
let server: DataServer;
const lines: Record<string, unknown>[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  const admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
  try {
    // XX000 (internal_error) is a class only a bug raises: the service answers INTERNAL.
    await admin.query(`create function public.err_boom() returns int language plpgsql as
                       $$ begin raise exception 'boom' using errcode = 'XX000'; end $$;
                       grant execute on function public.err_boom() to authenticated;`);
  } finally {
    await admin.end();
  }
  const logger = createLogger({
    service: 'data',
    level: 'info',
    env: 'test',
    stdout: { write: (line: string) => lines.push(JSON.parse(line)) },
  });
  server = await startDataServer(
    loadDataConfig({
      DATABASE_URL: db.appUrl,
      DATA_GRPC_ADDRESS: '127.0.0.1:0',
      JWT_SECRET: TEST_JWT_SECRET,
      SHUTDOWN_GRACE_MS: '2000',
    }),
    { logger },
  );
});

afterAll(async () => {
  await server?.close();
  await db?.drop();
});

it('an internal error line carries the caller’s role, user and tenant, and no token', async () => {
  const token = await signToken(
    TEST_JWT_SECRET,
    { sub: USERS.alice, role: 'authenticated', tenant_id: ACME },
    { expiresIn: 600 },
  );
  const channel = createChannel(`127.0.0.1:${server.port}`);
  try {
    const client = createClient(data.DataServiceDefinition, channel, {
      '*': { metadata: Metadata({ authorization: `Bearer ${token}` }) },
    });
    await expect(client.call({ function: 'err_boom' })).rejects.toMatchObject({ code: Status.INTERNAL });
  } finally {
    channel.close();
  }
  const errorLine = lines.find((l) => l.msg === 'internal error');
  expect(errorLine).toMatchObject({ level: 'error', role: 'authenticated', user_id: USERS.alice });
  expect(errorLine?.tenant_id).toBe(ACME);
  expect(JSON.stringify(lines)).not.toContain(token);
});
