// Child-process entry of the benchmarks: one Sluice service (argv[2]: "data", "events",
// "webhooks", or "http-floor": a bare 200 on the webhooks ingress's HTTP stack) in a
// process of its own, as in production, so the load generator does not share its event loop.
// Configured only by its environment (LOKI_*, OTEL_* and OPS_HTTP_ADDRESS included: the
// observed case runs with all of them); reports its ports and pool size to the parent over IPC
// and stops on the parent's "stop" message (or when the parent goes away).
import { loadDataConfig, startDataServer } from '@sluice/data-service';
import { loadEventsConfig, startEventsServer } from '@sluice/events-service';
import { createLogger } from '@sluice/observability';
import { type RunningService, ServiceProcess } from '@sluice/runtime';
import { loadWebhooksConfig, startWebhooksServer } from '@sluice/webhooks-service';
import { startHttpFloor } from './http-floor';

export interface ServerReady {
  readonly type: 'ready';
  readonly port: number;
  readonly poolMax: number;
  /** The ops listener's port when OPS_HTTP_ADDRESS was set. */
  readonly opsPort: number | undefined;
  /** The webhooks ingress's (or the floor's) HTTP port. */
  readonly httpPort?: number;
}

async function start(): Promise<{ service: RunningService; poolMax: number; httpPort?: number }> {
  if (process.argv[2] === 'http-floor') {
    const floor = await startHttpFloor(process.env.WEBHOOKS_HTTP_ADDRESS ?? '127.0.0.1:0');
    return { service: floor, poolMax: 0, httpPort: floor.port };
  }
  if (process.argv[2] === 'webhooks') {
    const config = loadWebhooksConfig(process.env);
    const service = await startWebhooksServer(config);
    return { service, poolMax: config.pool.max, httpPort: service.httpPort };
  }
  if (process.argv[2] === 'events') {
    const config = loadEventsConfig(process.env);
    return { service: await startEventsServer(config), poolMax: config.pool.max };
  }
  const config = loadDataConfig(process.env);
  return { service: await startDataServer(config), poolMax: config.pool.max };
}

const { service, poolMax, httpPort } = await start();
const proc = new ServiceProcess({
  logger: createLogger({ service: 'bench', level: 'warn', env: 'bench' }),
  stopTimeoutMs: 15_000,
});
proc.add(service);
if (process.env.OPS_HTTP_ADDRESS) await proc.startOps(process.env.OPS_HTTP_ADDRESS);
const ready: ServerReady = { type: 'ready', port: service.port, poolMax, opsPort: proc.opsPort, httpPort };
process.send?.(ready);

// Exiting through ServiceProcess flushes logs and spans, and a --cpu-prof profile, if asked for.
process.on('message', (message) => {
  if (message === 'stop') void proc.stop('bench done');
});
process.on('disconnect', () => void proc.stop('bench parent gone'));
