// Child-process entry of the data benchmark: the data service in a process of its own, as in
// production, so the load generator does not share its event loop. Configured only by its
// environment (loadDataConfig); reports its port and pool size to the parent over IPC and stops
// when the parent says "stop" (or disconnects).
import { loadDataConfig, startDataServer } from '@sluice/data-service';

export interface ServerReady {
  readonly type: 'ready';
  readonly port: number;
  readonly poolMax: number;
}

const config = loadDataConfig(process.env);
const server = await startDataServer(config);
const ready: ServerReady = { type: 'ready', port: server.port, poolMax: config.pool.max };
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
