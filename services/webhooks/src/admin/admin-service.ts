import { ConcurrencyLimit } from '@sluice/core';
import type { Database, SchemaCatalog } from '@sluice/db';
import type { AuthenticatedContext } from '@sluice/grpc';
import type { webhooks } from '@sluice/proto';
import type { ServiceImplementation } from 'nice-grpc';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { WebhooksConfig } from '../config';
import { consumerHandlers } from '../consumers/consume';
import { ConsumerWakeup } from '../consumers/wakeup';
import { typedChange } from '../inbound/supabase-change';
import { endpointHandlers } from './endpoints';
import { messageHandlers } from './messages';
import { sourceHandlers } from './sources';

export interface WebhooksServiceDeps {
  readonly db: Database;
  readonly pool: pg.Pool;
  readonly catalog: () => SchemaCatalog;
  readonly config: WebhooksConfig;
  readonly logger: Logger;
  /** Aborts when the server starts draining: Consume streams end. */
  readonly draining: AbortSignal;
  /** A direct (session) connection string for LISTEN (new inbound events wake consumers). */
  readonly listenConnectionString: string;
}

/**
 * The WebhooksService: sources and endpoints (sources.ts, endpoints.ts), messages and their
 * deliveries (messages.ts), and the durable consumers of inbound events (consumers/). Every
 * statement runs under the caller's role and claims; the migration's RLS does the tenancy.
 */
export function createWebhooksService(
  deps: WebhooksServiceDeps,
): ServiceImplementation<typeof webhooks.WebhooksServiceDefinition, AuthenticatedContext> {
  const wakeup = new ConsumerWakeup({
    connectionString: deps.listenConnectionString,
    logger: deps.logger,
    draining: deps.draining,
  });
  return {
    ...sourceHandlers({ db: deps.db, maxBodyBytes: deps.config.inbound.maxSourceBodyBytes }),
    ...endpointHandlers({
      db: deps.db,
      pool: deps.pool,
      catalog: deps.catalog,
      outbound: deps.config.outbound,
    }),
    ...messageHandlers({ db: deps.db }),
    ...consumerHandlers({
      db: deps.db,
      catalog: deps.catalog,
      settings: deps.config.consumers,
      logger: deps.logger,
      draining: deps.draining,
      wakeup,
      typedChange,
      // service_role (trusted backends) is bounded by the total only, as for event subscribers.
      streams: new ConcurrencyLimit({
        kind: 'consume streams',
        perIdentity: Math.min(deps.config.consumers.streamsPerIdentity, deps.config.consumers.streams),
        total: deps.config.consumers.streams,
        uncappedRoles: ['service_role'],
      }),
    }),
  };
}
