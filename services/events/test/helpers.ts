import { signToken } from '@sluice/auth';
import { type DataServer, loadDataConfig, startDataServer } from '@sluice/data-service';
import { data, events } from '@sluice/proto';
import { ACME, createTestDatabase, GLOBEX, TEST_JWT_SECRET, type TestDatabase, USERS } from '@sluice/testing';
import { type Channel, type Client, createChannel, createClientFactory, Metadata } from 'nice-grpc';
import { errorDetailsClientMiddleware } from 'nice-grpc-error-details';
import type pg from 'pg';
import { loadEventsConfig } from '../src/config';
import { type EventsServer, startEventsServer } from '../src/server';

// The demo data, re-exported so the test files import one module.
export { ACME, GLOBEX, TEST_JWT_SECRET, USERS };

export type EventsClient = Client<typeof events.EventsServiceDefinition>;
export type DataClient = Client<typeof data.DataServiceDefinition>;

export interface EventsStack {
  readonly db: TestDatabase;
  readonly events: EventsServer;
  readonly data: DataServer;
  /** Restarts the events service on the same database (a new port). */
  restartEvents(): Promise<void>;
  /** Another events service instance on the same database (its own pool, feed and port). */
  addEventsInstance(): Promise<{ client(token?: string): EventsClient; close(): Promise<void> }>;
  eventsClient(token?: string): EventsClient;
  dataClient(token?: string): DataClient;
  token(user: keyof typeof USERS | 'service'): Promise<string>;
  close(): Promise<void>;
}

/**
 * The events service and the data service (to write through) on one test database, real
 * servers on port 0. `env` overrides the events service's settings.
 */
export async function startEventsStack(env: Record<string, string> = {}): Promise<EventsStack> {
  const db = await createTestDatabase();
  const common = {
    DATABASE_URL: db.appUrl,
    JWT_SECRET: TEST_JWT_SECRET,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    SHUTDOWN_GRACE_MS: '1000',
  };
  const eventsConfig = () =>
    loadEventsConfig({
      ...common,
      EVENTS_GRPC_ADDRESS: '127.0.0.1:0',
      EVENTS_POLL_INTERVAL_MS: '200',
      ...env,
    });
  const dataServer = await startDataServer(loadDataConfig({ ...common, DATA_GRPC_ADDRESS: '127.0.0.1:0' }));
  let eventsServer = await startEventsServer(eventsConfig());
  const channels: Channel[] = [];
  const extra: EventsServer[] = [];
  const factory = createClientFactory().use(errorDetailsClientMiddleware);
  const metadata = (token?: string) => Metadata(token ? { authorization: `Bearer ${token}` } : {});
  const stack: EventsStack = {
    db,
    data: dataServer,
    get events() {
      return eventsServer;
    },
    async restartEvents() {
      await eventsServer.close();
      eventsServer = await startEventsServer(eventsConfig());
    },
    async addEventsInstance() {
      const server = await startEventsServer(eventsConfig());
      extra.push(server);
      return {
        client(token?: string) {
          const channel = createChannel(`127.0.0.1:${server.port}`);
          channels.push(channel);
          return factory.create(events.EventsServiceDefinition, channel, {
            '*': { metadata: metadata(token) },
          });
        },
        async close() {
          const i = extra.indexOf(server);
          if (i < 0) return;
          extra.splice(i, 1);
          await server.close();
        },
      };
    },
    eventsClient(token) {
      const channel = createChannel(`127.0.0.1:${eventsServer.port}`);
      channels.push(channel);
      return factory.create(events.EventsServiceDefinition, channel, { '*': { metadata: metadata(token) } });
    },
    dataClient(token) {
      const channel = createChannel(`127.0.0.1:${dataServer.port}`);
      channels.push(channel);
      return factory.create(data.DataServiceDefinition, channel, { '*': { metadata: metadata(token) } });
    },
    token(user) {
      if (user === 'service') return signToken(TEST_JWT_SECRET, { role: 'service_role' }, { expiresIn: 600 });
      return signToken(TEST_JWT_SECRET, { sub: USERS[user], role: 'authenticated' }, { expiresIn: 600 });
    },
    async close() {
      for (const c of channels) c.close();
      await Promise.all([eventsServer.close(), dataServer.close(), ...extra.map((e) => e.close())]);
      await db.drop();
    },
  };
  return stack;
}

/**
 * Orders change_log rows (alias `c`) as streams deliver them: by change window, then id. Call
 * appendWindow first so every committed row has its window.
 */
export const DELIVERY_ORDER =
  '(select min(w.seq) from sluice.change_window w where pg_catalog.pg_visible_in_snapshot(c.xid, w.boundary)), c.id';

/** Appends a change window now (waiting for a concurrent append): every change committed so far is in a window. */
export async function appendWindow(client: pg.Client): Promise<{ window: bigint; lastId: bigint }> {
  const appended = await client.query<{ seq: string }>(
    'select sluice.append_change_window(true)::text as seq',
  );
  const { rows } = await client.query<{ last_id: string }>(
    'select last_id::text from sluice.change_window where seq = $1::bigint',
    [appended.rows[0]?.seq],
  );
  return { window: BigInt(appended.rows[0]?.seq ?? '0'), lastId: BigInt(rows[0]?.last_id ?? '0') };
}
