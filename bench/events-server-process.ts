// Child-process entry of the events benchmark: the events service in a process of its own, as in
// production, so the load generator and the subscribers do not share its event loop. Configured
// only by its environment (loadEventsConfig); reports its port to the parent over IPC and stops
// when the parent says "stop" (or disconnects).
import { loadEventsConfig, startEventsServer } from '@sluice/events-service';

export interface EventsServerReady {
  readonly type: 'ready';
  readonly port: number;
  readonly poolMax: number;
}

const config = loadEventsConfig(process.env);
const server = await startEventsServer(config);
const ready: EventsServerReady = { type: 'ready', port: server.port, poolMax: config.pool.max };
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
