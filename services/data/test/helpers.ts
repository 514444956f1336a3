import { signToken } from '@sluice/auth';
import { data } from '@sluice/proto';
import { ACME, createTestDatabase, GLOBEX, TEST_JWT_SECRET, type TestDatabase, USERS } from '@sluice/testing';
import { type Channel, type Client, createChannel, createClientFactory, Metadata } from 'nice-grpc';
import { errorDetailsClientMiddleware } from 'nice-grpc-error-details';
import { loadDataConfig } from '../src/config';
import { type DataServer, startDataServer } from '../src/server';

// The demo data, re-exported so the test files import one module.
export { ACME, GLOBEX, TEST_JWT_SECRET, USERS };

export type DataClient = Client<typeof data.DataServiceDefinition>;

export interface TestStack {
  readonly db: TestDatabase;
  readonly server: DataServer;
  readonly channel: Channel;
  /** A client sending `token` (none: anonymous). */
  client(token?: string): DataClient;
  /** A signed token for a demo user (role authenticated) or the service role. */
  token(user: keyof typeof USERS | 'service', claims?: Record<string, unknown>): Promise<string>;
  close(): Promise<void>;
}

/**
 * A real data service on port 0 over the test file's own database (connecting as the
 * non-superuser login role), with real gRPC clients.
 */
export async function startStack(env: Record<string, string> = {}): Promise<TestStack> {
  const db = await createTestDatabase();
  const config = loadDataConfig({
    DATABASE_URL: db.appUrl,
    DATA_GRPC_ADDRESS: '127.0.0.1:0',
    JWT_SECRET: TEST_JWT_SECRET,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    SHUTDOWN_GRACE_MS: '2000',
    ...env,
  });
  const server = await startDataServer(config);
  const channel = createChannel(`127.0.0.1:${server.port}`);
  const factory = createClientFactory().use(errorDetailsClientMiddleware);
  return {
    db,
    server,
    channel,
    client(token) {
      const metadata = Metadata(token ? { authorization: `Bearer ${token}` } : {});
      return factory.create(data.DataServiceDefinition, channel, { '*': { metadata } });
    },
    token(user, claims = {}) {
      if (user === 'service')
        return signToken(TEST_JWT_SECRET, { role: 'service_role', ...claims }, { expiresIn: 600 });
      return signToken(
        TEST_JWT_SECRET,
        { sub: USERS[user], role: 'authenticated', ...claims },
        { expiresIn: 600 },
      );
    },
    async close() {
      channel.close();
      await server.close();
      await db.drop();
    },
  };
}
