import { webhooks } from '@sluice/proto';
import { type GrpcServiceOptions, type RunningService, startGrpcService } from '@sluice/runtime';
import { createWebhooksService } from './admin/admin-service';
import type { WebhooksConfig } from './config';
import { startIngress } from './inbound/ingress';
import { startFanout } from './outbound/fanout';
import { startDeliveryWorker } from './outbound/worker';
import { startRetention } from './retention';

export interface WebhooksServer extends RunningService {
  /** The port of the HTTP ingress (POST /webhooks/{source}); useful with port 0. */
  readonly httpPort: number;
}

export type StartWebhooksOptions = GrpcServiceOptions;

/**
 * The webhooks service on the shared runtime (@sluice/runtime: logs, traces, metrics, pool,
 * catalog, authentication, gRPC server, health, shutdown) with its own parts beside the gRPC API:
 * the HTTP ingress for inbound webhooks, the row-change fan-out, the delivery workers and
 * retention. At shutdown the runtime drains gRPC first; then these stop in reverse (the ingress
 * finishes the requests it has, workers finish or abandon their attempts to the lease).
 */
export async function startWebhooksServer(
  config: WebhooksConfig,
  options: StartWebhooksOptions = {},
): Promise<WebhooksServer> {
  let httpPort = 0;
  const service = await startGrpcService(
    {
      name: 'webhooks',
      grpcService: webhooks.WebhooksServiceDefinition.fullName,
      settings: config,
      statementTimeoutMs: 30_000,
      async setup({ logger, pool, db, catalog, server, authenticated, onClose }) {
        authenticated.add(
          webhooks.WebhooksServiceDefinition,
          createWebhooksService({
            db,
            pool,
            catalog,
            config,
            logger,
            draining: server.draining,
            listenConnectionString: config.sessionDatabaseUrl,
          }),
        );
        const worker = await startDeliveryWorker({
          pool,
          logger,
          settings: config.outbound,
          listenConnectionString: config.sessionDatabaseUrl,
        });
        onClose(() => worker.close());
        const fanout = await startFanout({
          pool,
          db,
          logger,
          catalog,
          listenConnectionString: config.sessionDatabaseUrl,
          ...config.fanout,
        });
        onClose(() => fanout.close());
        onClose(startRetention({ pool, logger, inbound: config.inbound, outbound: config.outbound }));
        // Last: senders reach us only once everything behind the inbox runs.
        const ingress = await startIngress({ pool, logger, catalog, settings: config.inbound });
        httpPort = ingress.port;
        onClose(() => ingress.close());
      },
    },
    options,
  );
  return { ...service, httpPort };
}
