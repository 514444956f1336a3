import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import type { ServerReady } from './server-process';

export interface ChildServer {
  readonly port: number;
  readonly pid: number;
  readonly poolMax: number;
  /** The ops listener's port, when OPS_HTTP_ADDRESS was given. */
  readonly opsPort: number | undefined;
  /** The HTTP port (webhooks ingress, http-floor). */
  readonly httpPort: number | undefined;
  /** Asks the service to stop gracefully; kills it after 10 s. */
  close(): Promise<void>;
}

const ENTRY = fileURLToPath(new URL('./server-process.ts', import.meta.url));
const TSX_LOADER = import.meta.resolve('tsx');
// As the services run in production (package.json start scripts, the image): AsyncLocalStorage
// on async context frames instead of promise hooks, which tracing otherwise costs every promise.
const SERVICE_NODE_FLAGS = ['--experimental-async-context-frame'];

/** Starts a Sluice service in a child process (its own event loop and CPU, as deployed). */
export async function startChildServer(
  service: 'data' | 'events' | 'webhooks' | 'http-floor',
  env: Record<string, string>,
  nodeFlags: readonly string[],
  { quiet = false }: { quiet?: boolean } = {},
): Promise<ChildServer> {
  const child: ChildProcess = spawn(
    process.execPath,
    ['--import', TSX_LOADER, ...SERVICE_NODE_FLAGS, ...nodeFlags, ENTRY, service],
    {
      env: { ...process.env, ...env },
      // quiet: log lines (one per call at info) go nowhere, as if a log shipper took them.
      stdio: ['ignore', quiet ? 'ignore' : 'inherit', 'inherit', 'ipc'],
    },
  );
  const exited = once(child, 'exit');
  const ready = new Promise<ServerReady>((resolve, reject) => {
    child.on('message', (m: ServerReady) => {
      if (m.type === 'ready') resolve(m);
    });
    void exited.then(([code]) => reject(new Error(`${service} service child exited early (code ${code})`)));
  });
  const { port, poolMax, opsPort, httpPort } = await ready;
  return {
    port,
    httpPort,
    pid: child.pid ?? -1,
    poolMax,
    opsPort,
    async close() {
      if (child.exitCode !== null) return;
      child.send('stop');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
