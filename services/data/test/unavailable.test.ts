import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { signToken } from '@sluice/auth';
import { createPool, Database } from '@sluice/db';
import { data } from '@sluice/proto';
import { createTestDatabase, TEST_JWT_SECRET, type TestDatabase, USERS } from '@sluice/testing';
import { createChannel, createClientFactory, Metadata, Status } from 'nice-grpc';
import { errorDetailsClientMiddleware } from 'nice-grpc-error-details';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTcpProxy } from '../../../test/tcp-proxy';
import { loadDataConfig } from '../src/config';
import { type DataServer, startDataServer } from '../src/server';
import { expectRejection } from './expect-rejection';

// While PostgreSQL cannot be reached, data calls answer UNAVAILABLE (retry later), never
// INTERNAL. The service reaches the real test PostgreSQL through a proxy (TCP, or a Unix socket
// as on production machines); closing the proxy makes the database unreachable mid-life: pooled
// connections end ("Connection terminated") and new ones are refused (ECONNREFUSED, ENOENT).

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.drop();
});

/** A byte proxy to the test database, on a loopback port or a Unix socket; `close` cuts every connection. */
const startProxy = (listen: { path?: string } = {}) => startTcpProxy(Number(new URL(db.appUrl).port), listen);

async function startService(databaseUrl: string): Promise<DataServer> {
  return startDataServer(
    loadDataConfig({
      DATABASE_URL: databaseUrl,
      DATA_GRPC_ADDRESS: '127.0.0.1:0',
      JWT_SECRET: TEST_JWT_SECRET,
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
      SHUTDOWN_GRACE_MS: '500',
      DB_POOL_ACQUIRE_TIMEOUT_MS: '2000',
    }),
  );
}

async function expectUnavailableCalls(server: DataServer) {
  const channel = createChannel(`127.0.0.1:${server.port}`);
  const token = await signToken(
    TEST_JWT_SECRET,
    { sub: USERS.alice, role: 'authenticated' },
    { expiresIn: 600 },
  );
  const client = createClientFactory()
    .use(errorDetailsClientMiddleware)
    .create(data.DataServiceDefinition, channel, {
      '*': { metadata: Metadata({ authorization: `Bearer ${token}` }) },
    });
  try {
    // Twice: the first call may meet a pooled connection that just died, the second a new one.
    for (let i = 0; i < 2; i++) {
      await expectRejection(client.select({ table: 'posts', limit: 1 }), {
        code: Status.UNAVAILABLE,
        reason: 'SLUICE_DATABASE_UNAVAILABLE',
      });
    }
    await expectRejection(
      client.transaction({
        operations: [{ kind: { $case: 'select', value: { table: 'posts', limit: 1 } as never } }],
      }),
      { code: Status.UNAVAILABLE, reason: 'SLUICE_DATABASE_UNAVAILABLE' },
    );
  } finally {
    channel.close();
  }
}

function urlVia(host: string, port: number): string {
  const u = new URL(db.appUrl);
  u.hostname = host;
  u.port = String(port);
  return u.toString();
}

describe('PostgreSQL unreachable', () => {
  it('over TCP: connections cut, then refused on a closed port', async () => {
    const proxy = await startProxy();
    const server = await startService(urlVia('127.0.0.1', proxy.port));
    try {
      const channel = createChannel(`127.0.0.1:${server.port}`);
      const token = await signToken(
        TEST_JWT_SECRET,
        { sub: USERS.alice, role: 'authenticated' },
        { expiresIn: 600 },
      );
      const client = createClientFactory().create(data.DataServiceDefinition, channel, {
        '*': { metadata: Metadata({ authorization: `Bearer ${token}` }) },
      });
      // Up: the call works, and leaves a pooled connection behind.
      const ok = await client.select({ table: 'posts', columns: ['id'], limit: 1 });
      expect(ok.result?.rows.length).toBe(1);
      channel.close();
      await proxy.close();
      await expectUnavailableCalls(server);
    } finally {
      await server.close();
    }
  });

  it('over a Unix socket: the socket file is gone (ENOENT) or nobody listens', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sluice-socket-'));
    const proxy = await startProxy({ path: path.join(dir, '.s.PGSQL.5432') });
    const u = new URL(db.appUrl);
    const url = `postgres://${u.username}:${u.password}@localhost:5432/${u.pathname.slice(1)}?host=${encodeURIComponent(dir)}`;
    const server = await startService(url);
    try {
      await proxy.close();
      await expectUnavailableCalls(server);
    } finally {
      await server.close();
    }
  });

  it('the Database layer maps refused and missing sockets to UNAVAILABLE too', async () => {
    const closed = await startProxy();
    await closed.close();
    const dir = mkdtempSync(path.join(tmpdir(), 'sluice-nosocket-'));
    const u = new URL(db.appUrl);
    const urls = [
      urlVia('127.0.0.1', closed.port),
      `postgres://${u.username}:${u.password}@localhost:5432/${u.pathname.slice(1)}?host=${encodeURIComponent(dir)}`,
    ];
    for (const url of urls) {
      const database = new Database(
        createPool({
          connectionString: url,
          applicationName: 'unavailable-test',
          max: 1,
          min: 0,
          idleTimeoutMs: 1000,
          maxLifetimeSeconds: 0,
          acquireTimeoutMs: 2000,
        }),
        {
          statementTimeoutMs: 1000,
        },
      );
      try {
        const scope = {
          identity: { role: 'anon', claims: {} } as never,
          readOnly: true,
          signal: new AbortController().signal,
          deadline: undefined,
        };
        const error = await database
          .run(scope, [{ sql: 'select 1', parameters: [] }])
          .catch((e: unknown) => e);
        expect(error).toMatchObject({ code: 'UNAVAILABLE', reason: 'SLUICE_DATABASE_UNAVAILABLE' });
      } finally {
        await database.close();
      }
    }
  });
});
