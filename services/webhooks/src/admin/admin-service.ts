import type { Database, SchemaCatalog } from '@sluice/db';
import type { AuthenticatedContext } from '@sluice/grpc';
import { webhooks } from '@sluice/proto';
import { ServerError, type ServiceImplementation, Status } from 'nice-grpc';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { WebhooksConfig } from '../config';

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

// PLACEHOLDER (being written): the gRPC admin API, Consume and Ack.
export function createWebhooksService(
  _deps: WebhooksServiceDeps,
): ServiceImplementation<typeof webhooks.WebhooksServiceDefinition, AuthenticatedContext> {
  const unimplemented = () => {
    throw new ServerError(Status.UNIMPLEMENTED, 'not yet');
  };
  return Object.fromEntries(
    Object.keys(webhooks.WebhooksServiceDefinition.methods).map((m) => [m, unimplemented]),
  ) as unknown as ServiceImplementation<typeof webhooks.WebhooksServiceDefinition, AuthenticatedContext>;
}
