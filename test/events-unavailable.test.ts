import { signToken } from '@sluice/auth';
import { events } from '@sluice/proto';
import { ACME, createTestDatabase, TEST_JWT_SECRET, type TestDatabase, USERS } from '@sluice/testing';
import { createChannel, createClientFactory, Metadata, Status } from 'nice-grpc';
import { errorDetailsClientMiddleware } from 'nice-grpc-error-details';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadEventsConfig } from '../services/events/src/config';
import { type EventsServer, startEventsServer } from '../services/events/src/server';
import { OpenStream, recordOf } from '../services/events/test/open-stream';
import { startTcpProxy, type TcpProxy } from './tcp-proxy';

// While PostgreSQL cannot be reached, Subscribe answers UNAVAILABLE (retry later), never
// INTERNAL, and the service recovers when it is back. The events service reaches the test
// PostgreSQL through a proxy that can refuse every connection.

let db: TestDatabase;
let proxy: TcpProxy;
let server: EventsServer;
let channel: ReturnType<typeof createChannel>;

beforeAll(async () => {
  db = await createTestDatabase();
  proxy = await startTcpProxy(Number(new URL(db.appUrl).port));
  server = await startEventsServer(
    loadEventsConfig({
      DATABASE_URL: proxy.url(db.appUrl),
      JWT_SECRET: TEST_JWT_SECRET,
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
      SHUTDOWN_GRACE_MS: '1000',
      EVENTS_GRPC_ADDRESS: '127.0.0.1:0',
      EVENTS_HEARTBEAT_MS: '100',
      EVENTS_POLL_INTERVAL_MS: '200',
    }),
  );
  channel = createChannel(`127.0.0.1:${server.port}`);
});

afterAll(async () => {
  channel?.close();
  await server?.close();
  await proxy?.close();
  await db?.drop();
});

describe('Subscribe while the database is unreachable', () => {
  it('answers UNAVAILABLE, and serves again once the database is back', async () => {
    const token = await signToken(
      TEST_JWT_SECRET,
      { sub: USERS.alice, role: 'authenticated' },
      { expiresIn: 600 },
    );
    const client = createClientFactory()
      .use(errorDetailsClientMiddleware)
      .create(events.EventsServiceDefinition, channel, {
        '*': { metadata: Metadata({ authorization: `Bearer ${token}` }) },
      });
    const request = { tables: [{ table: 'posts' }], start: { $case: 'fromNow' as const, value: true } };
    const up = new OpenStream(client, request);
    await up.ready();

    proxy.setDown(true);
    // New calls are refused as a retryable failure, whatever their start.
    for (const start of [request.start, { $case: 'snapshot' as const, value: true }]) {
      const s = new OpenStream(client, { ...request, start });
      await s.done;
      expect(s.error, JSON.stringify(start)).toMatchObject({ code: Status.UNAVAILABLE });
    }

    proxy.setDown(false);
    // The stream that stayed open through the outage loses nothing: a post written now arrives.
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    try {
      await admin.query(
        `insert into public.posts (tenant_id, author_id, title, status) values ($1, $2, 'after the outage', 'published')`,
        [ACME, USERS.alice],
      );
    } finally {
      await admin.end();
    }
    await up.waitFor(
      (x) => x.changes.some((e) => recordOf(e)?.title === 'after the outage'),
      20_000,
      'the post',
    );
    await up.cancel();
    // And new calls are served again.
    const again = new OpenStream(client, request);
    await again.ready();
    await again.cancel();
  });
});
