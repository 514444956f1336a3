import { ChangeFeed, capturedTables, PositionCodec, purgeChanges } from '@sluice/changes';
import { ConcurrencyLimit } from '@sluice/core';
import { events } from '@sluice/proto';
import { type GrpcServiceOptions, type RunningService, startGrpcService } from '@sluice/runtime';
import type { EventsConfig } from './config';
import { createEventsService } from './events-service';
import { SubscriptionHub } from './hub';
import { registerHub } from './metrics';

export interface EventsServer extends RunningService {
  /** Subscribers currently following the shared feed. */
  readonly subscribers: () => number;
}

export type StartEventsOptions = GrpcServiceOptions;

/**
 * The events service on the shared runtime (@sluice/runtime): one shared change feed (LISTEN
 * wake-ups + polling), the subscription hub, change log retention, and Subscribe. At shutdown
 * the runtime drains the server first, which ends every stream with UNAVAILABLE and its
 * position (clients resume elsewhere), then stops the hub and the feed.
 */
export async function startEventsServer(
  config: EventsConfig,
  options: StartEventsOptions = {},
): Promise<EventsServer> {
  let hub: SubscriptionHub | undefined;
  const service = await startGrpcService(
    {
      name: 'events',
      grpcService: events.EventsServiceDefinition.fullName,
      settings: config,
      statementTimeoutMs: 30_000,
      async setup({ logger, pool, db, catalog, server, authenticated, onCatalogReload, onClose }) {
        let captured = await capturedTables(pool);
        onCatalogReload(() => {
          capturedTables(pool)
            .then((tables) => {
              captured = tables;
            })
            .catch((err: unknown) => logger.error({ err }, 'reading captured tables failed'));
        });
        // A batch is pushed to every stream at once: keep it within half a stream's buffer, so a
        // client that keeps up (drains between batches) is never ended by a single large batch.
        const feedBatchSize = Math.max(
          1,
          Math.min(config.feed.batchSize, Math.floor(config.stream.bufferEvents / 2)),
        );
        const feed = await ChangeFeed.start({
          pool,
          listenConnectionString: config.sessionDatabaseUrl,
          batchSize: feedBatchSize,
          probeIntervalMs: config.feed.probeIntervalMs,
          pollIntervalMs: config.feed.pollIntervalMs,
          logger,
        });
        onClose(() => feed.close());
        const subscriptions = new SubscriptionHub(feed, db, feedBatchSize, logger);
        hub = subscriptions;
        onClose(registerHub(subscriptions));
        onClose(() => subscriptions.close());

        authenticated.add(
          events.EventsServiceDefinition,
          createEventsService({
            db,
            catalog,
            captured: () => captured,
            feed,
            hub: subscriptions,
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

        const retention = setInterval(() => {
          purgeChanges(pool, config.retention.maxAgeMs)
            .then((deleted) => deleted > 0 && logger.info({ deleted }, 'change log retention'))
            .catch((err: unknown) => logger.error({ err }, 'change log retention failed'));
        }, config.retention.intervalMs);
        retention.unref();
        onClose(() => clearInterval(retention));
      },
    },
    options,
  );
  return { ...service, subscribers: () => hub?.size ?? 0 };
}
