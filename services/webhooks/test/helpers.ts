import { signToken } from '@sluice/auth';
import { type DataServer, loadDataConfig, startDataServer } from '@sluice/data-service';
import { data, webhooks } from '@sluice/proto';
import { ACME, createTestDatabase, GLOBEX, TEST_JWT_SECRET, type TestDatabase, USERS } from '@sluice/testing';
import {
  type Channel,
  type Client,
  ClientError,
  createChannel,
  createClientFactory,
  Metadata,
  Status,
} from 'nice-grpc';
import { BadRequest, errorDetailsClientMiddleware, RichClientError } from 'nice-grpc-error-details';
import pg from 'pg';
import { expect } from 'vitest';
import { loadWebhooksConfig } from '../src/config';
import { generateSecret } from '../src/secrets';
import { startWebhooksServer, type WebhooksServer } from '../src/server';

export { ACME, GLOBEX, TEST_JWT_SECRET, USERS };

export type WebhooksClient = Client<typeof webhooks.WebhooksServiceDefinition>;
export type DataClient = Client<typeof data.DataServiceDefinition>;

/** Who a test token is for: a demo user, service_role, or a tenant's webhook admin. */
export type TokenFor = keyof typeof USERS | 'service' | { readonly admin: string; readonly sub?: string };

export interface WebhooksInstance {
  readonly server: WebhooksServer;
  /** http://127.0.0.1:<port> of its ingress. */
  readonly httpUrl: string;
  client(token?: string): WebhooksClient;
  close(): Promise<void>;
}

export interface WebhooksStack extends WebhooksInstance {
  readonly db: TestDatabase;
  readonly data: DataServer;
  /** A superuser pool on the test database, for setup and for checking what was stored. */
  readonly pool: pg.Pool;
  /** Another webhooks instance on the same database (its own pool, workers, ports). */
  addInstance(env?: Record<string, string>): Promise<WebhooksInstance>;
  dataClient(token?: string): DataClient;
  token(who: TokenFor): Promise<string>;
}

/**
 * The webhooks service (and the data service, to write rows through) on one test database, real
 * servers on port 0. Outbound requests may reach loopback (WEBHOOKS_ALLOWED_HOSTS), where the
 * tests' receivers listen. `env` overrides the webhooks service's settings.
 */
export async function startWebhooksStack(env: Record<string, string> = {}): Promise<WebhooksStack> {
  const db = await createTestDatabase();
  const common = {
    DATABASE_URL: db.appUrl,
    JWT_SECRET: TEST_JWT_SECRET,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    SHUTDOWN_GRACE_MS: '1000',
  };
  const webhooksEnv = (extra: Record<string, string>) => ({
    ...common,
    WEBHOOKS_GRPC_ADDRESS: '127.0.0.1:0',
    WEBHOOKS_HTTP_ADDRESS: '127.0.0.1:0',
    WEBHOOKS_ALLOWED_HOSTS: '127.0.0.1,::1,localhost',
    WEBHOOKS_POLL_INTERVAL_MS: '200',
    ...env,
    ...extra,
  });
  const channels: Channel[] = [];
  const factory = createClientFactory().use(errorDetailsClientMiddleware);
  const metadata = (token?: string) => Metadata(token ? { authorization: `Bearer ${token}` } : {});
  const instances: WebhooksInstance[] = [];
  const startInstance = async (extra: Record<string, string> = {}): Promise<WebhooksInstance> => {
    const server = await startWebhooksServer(loadWebhooksConfig(webhooksEnv(extra)));
    const instance: WebhooksInstance = {
      server,
      httpUrl: `http://127.0.0.1:${server.httpPort}`,
      client(token) {
        const channel = createChannel(`127.0.0.1:${server.port}`);
        channels.push(channel);
        return factory.create(webhooks.WebhooksServiceDefinition, channel, {
          '*': { metadata: metadata(token) },
        });
      },
      async close() {
        const i = instances.indexOf(instance);
        if (i >= 0) instances.splice(i, 1);
        await server.close();
      },
    };
    instances.push(instance);
    return instance;
  };
  const dataServer = await startDataServer(loadDataConfig({ ...common, DATA_GRPC_ADDRESS: '127.0.0.1:0' }));
  const first = await startInstance();
  const pool = new pg.Pool({ connectionString: db.url, max: 4 });
  return {
    ...first,
    db,
    data: dataServer,
    pool,
    addInstance: startInstance,
    dataClient(token) {
      const channel = createChannel(`127.0.0.1:${dataServer.port}`);
      channels.push(channel);
      return factory.create(data.DataServiceDefinition, channel, { '*': { metadata: metadata(token) } });
    },
    token(who) {
      if (who === 'service') return signToken(TEST_JWT_SECRET, { role: 'service_role' }, { expiresIn: 600 });
      if (typeof who === 'object')
        return signToken(
          TEST_JWT_SECRET,
          {
            sub: who.sub ?? USERS.alice,
            role: 'authenticated',
            tenant_id: who.admin,
            tenant_role: 'admin',
          },
          { expiresIn: 600 },
        );
      return signToken(TEST_JWT_SECRET, { sub: USERS[who], role: 'authenticated' }, { expiresIn: 600 });
    },
    async close() {
      for (const c of channels) c.close();
      await Promise.all([...instances.map((i) => i.server.close()), dataServer.close()]);
      await pool.end();
      await db.drop();
    },
  };
}

/** How a call failed: its status name and the fields its BadRequest names (fails the test if it succeeded). */
export async function rejection(call: Promise<unknown>): Promise<{ code: string; fields: string[] }> {
  const error = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, 'the call should have failed').toBeInstanceOf(ClientError);
  const extra = error instanceof RichClientError ? error.extra : [];
  const bad = extra.find((d) => d.$type === BadRequest.$type) as BadRequest | undefined;
  return {
    code: Status[(error as ClientError).code],
    fields: bad?.fieldViolations.map((v) => v.field) ?? [],
  };
}

/**
 * A service-level endpoint (owner service_role) for published messages of `eventType`, written
 * straight to the table with one signing secret, as tests that drive the delivery worker need.
 * Returns its id.
 */
export async function insertEndpoint(pool: pg.Pool, url: string, eventType: string): Promise<string> {
  const { rows } = await pool.query<{ id: string }>(
    `insert into sluice_webhooks.endpoints (url, event_types, owner_role) values ($1, $2, 'service_role') returning id`,
    [url, [eventType]],
  );
  const endpoint = (rows[0] as { id: string }).id;
  await pool.query('insert into sluice_webhooks.secrets (endpoint_id, secret) values ($1, $2)', [
    endpoint,
    generateSecret(),
  ]);
  return endpoint;
}
