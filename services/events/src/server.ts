import { createAuthenticator } from '@sluice/auth';
import { ChangeFeed, capturedTables, PositionCodec, purgeChanges } from '@sluice/changes';
import { ConcurrencyLimit } from '@sluice/core';
import {
  CatalogWatcher,
  createPool,
  Database,
  databaseReady,
  poolConnectionString,
  watchReadiness,
} from '@sluice/db';
import { authMiddleware, createGrpcServer } from '@sluice/grpc';
import { createLogger, registerPool } from '@sluice/observability';
import { events } from '@sluice/proto';
import type { Logger } from 'pino';
import type { EventsConfig } from './config';
import { createEventsService } from './events-service';
import { SubscriptionHub } from './hub';
import { registerHub } from './metrics';

export interface EventsServer {
  readonly port: number;
  readonly logger: Logger;
  /** Subscribers currently following the shared feed. */
  readonly subscribers: () => number;
  /** Ends every stream with UNAVAILABLE (clients resume from their position), then stops. */
  close(): Promise<void>;
}

const SERVICE_NAME = events.EventsServiceDefinition.fullName;

export interface StartEventsOptions {
  readonly logger?: Logger;
  /** The application's migrations folder: health also waits for them to be current. */
  readonly migrationsDir?: string;
}

/**
 * Composes the events service: a pool, the schema catalog (live reload), one shared change feed
 * (LISTEN wake-ups + polling), the subscription hub, retention, and the gRPC server. Health turns
 * SERVING once the database answers with its migrations current, and NOT_SERVING while not.
 */
export async function startEventsServer(
  config: EventsConfig,
  options: StartEventsOptions = {},
): Promise<EventsServer> {
  const logger =
    options.logger ?? createLogger({ service: 'events', level: config.logLevel, env: config.env });
  const { preparedStatements, ...poolConfig } = config.pool;
  const pool = createPool({
    connectionString: poolConnectionString(config.databaseUrl, config.pool),
    applicationName: 'sluice-events',
    ...poolConfig,
  });
  const unregisterPool = registerPool('events', pool);
  const db = new Database(pool, {
    statementTimeoutMs: 30_000,
    preparedStatementsPerConnection: preparedStatements,
  });
  let captured = await capturedTables(pool);
  const catalog = await CatalogWatcher.start({
    connectionString: config.databaseUrl,
    schemas: config.schemas,
    roles: config.auth.allowedRoles,
    logger,
    onReload: () => {
      db.invalidateStatements();
      capturedTables(pool)
        .then((tables) => {
          captured = tables;
        })
        .catch((err: unknown) => logger.error({ err }, 'reading captured tables failed'));
    },
  });
  // A batch is pushed to every stream at once: keep it within half a stream's buffer, so a
  // client that keeps up (drains between batches) is never ended by a single large batch.
  const feedBatchSize = Math.max(
    1,
    Math.min(config.feed.batchSize, Math.floor(config.stream.bufferEvents / 2)),
  );
  const feed = await ChangeFeed.start({
    pool,
    listenConnectionString: config.databaseUrl,
    batchSize: feedBatchSize,
    probeIntervalMs: config.feed.probeIntervalMs,
    pollIntervalMs: config.feed.pollIntervalMs,
    logger,
  });
  const hub = new SubscriptionHub(feed, db, feedBatchSize, logger);
  const unregisterHub = registerHub(hub);
  const authenticator = createAuthenticator(config.auth);
  const server = createGrpcServer({
    logger,
    maxReceiveMessageBytes: config.maxMessageBytes,
    maxSendMessageBytes: config.maxMessageBytes,
    reflectionServices: [SERVICE_NAME],
  });
  server.services.with(authMiddleware((header, o) => authenticator.authenticate(header, o))).add(
    events.EventsServiceDefinition,
    createEventsService({
      db,
      catalog: () => catalog.current,
      captured: () => captured,
      feed,
      hub,
      codec: new PositionCodec(config.positionSecret),
      stream: config.stream,
      draining: server.draining,
      // service_role (trusted backends, the service key bypasses RLS) is bounded by the totals only.
      subscriptions: new ConcurrencyLimit({
        kind: 'subscriptions',
        perIdentity: config.limits.subscriptionsPerIdentity,
        total: config.limits.subscriptions,
        uncappedRoles: ['service_role'],
      }),
      snapshots: new ConcurrencyLimit({
        kind: 'snapshots',
        perIdentity: config.limits.snapshotsPerIdentity,
        total: config.limits.snapshots,
        uncappedRoles: ['service_role'],
      }),
    }),
  );
  const port = await server.listen(config.grpcAddress);
  const stopHealth = new AbortController();
  void watchReadiness(
    () => databaseReady(config.databaseUrl, options.migrationsDir),
    (ready) => server.health.setStatus(ready ? 'healthy' : 'unhealthy', SERVICE_NAME),
    stopHealth.signal,
  );
  logger.info({ address: config.grpcAddress, port }, 'events service listening');

  const retention = setInterval(() => {
    purgeChanges(pool, config.retention.maxAgeMs)
      .then((deleted) => deleted > 0 && logger.info({ deleted }, 'change log retention'))
      .catch((err: unknown) => logger.error({ err }, 'change log retention failed'));
  }, config.retention.intervalMs);
  retention.unref();

  return {
    port,
    logger,
    subscribers: () => hub.size,
    async close() {
      unregisterPool();
      unregisterHub();
      stopHealth.abort();
      clearInterval(retention);
      await server.shutdown(config.shutdownGraceMs);
      hub.close();
      await feed.close();
      authenticator.close();
      await catalog.close();
      await db.close();
      logger.info('events service stopped');
    },
  };
}
