// Child-process entry of the benchmarks: one Sluice service (argv[2]: "data" or "events") in a
// process of its own, as in production, so the load generator does not share its event loop.
// Configured only by its environment; reports its port and pool size to the parent over IPC and
// stops on the parent's "stop" message (or when the parent goes away).
import { loadDataConfig, startDataServer } from '@sluice/data-service';
import { loadEventsConfig, startEventsServer } from '@sluice/events-service';

export interface ServerReady {
  readonly type: 'ready';
  readonly port: number;
  readonly poolMax: number;
}

async function start(): Promise<{ port: number; poolMax: number; close(): Promise<void> }> {
  if (process.argv[2] === 'events') {
    const config = loadEventsConfig(process.env);
    const server = await startEventsServer(config);
    return { port: server.port, poolMax: config.pool.max, close: () => server.close() };
  }
  const config = loadDataConfig(process.env);
  const server = await startDataServer(config);
  return { port: server.port, poolMax: config.pool.max, close: () => server.close() };
}

const server = await start();
const ready: ServerReady = { type: 'ready', port: server.port, poolMax: server.poolMax };
process.send?.(ready);

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await server.close();
  process.disconnect?.();
  // Exiting explicitly also flushes a --cpu-prof profile, if one was asked for.
  process.exit(0);
};
process.on('message', (message) => {
  if (message === 'stop') void stop();
});
process.on('disconnect', () => void stop());
