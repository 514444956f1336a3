import { createServer, type Server } from 'node:http';
import type { Logger } from 'pino';
import { metrics } from './metrics';

export interface OpsServerOptions {
  /** host:port to listen on (port 0: any free port). */
  readonly address: string;
  /** Whether the process may take traffic now (database reachable, migrations current, not draining). */
  readonly ready: () => Promise<{ readonly ready: boolean; readonly reason?: string }>;
  readonly logger: Logger;
}

export interface OpsServer {
  readonly port: number;
  close(): Promise<void>;
}

/**
 * The process's HTTP listener for operators (Fly's checks, Prometheus): `/healthz` answers 200
 * while the process runs; `/readyz` 200 when `ready` says so and 503 (with the reason) otherwise;
 * `/metrics` the Prometheus text format of every service in the process. It never answers gRPC,
 * and nothing it serves carries request data.
 */
export async function startOpsServer(options: OpsServerOptions): Promise<OpsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const send = (status: number, type: string, body: string) => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain', 'method not allowed\n');
    if (path === '/healthz') return send(200, 'text/plain', 'ok\n');
    if (path === '/readyz') {
      options.ready().then(
        (r) => send(r.ready ? 200 : 503, 'application/json', `${JSON.stringify(r)}\n`),
        (error: unknown) => {
          options.logger.warn({ err: error }, 'readiness check failed');
          send(
            503,
            'application/json',
            `${JSON.stringify({ ready: false, reason: 'readiness check failed' })}\n`,
          );
        },
      );
      return;
    }
    if (path === '/metrics') {
      metrics.metrics().then(
        (text) => send(200, metrics.contentType, text),
        (error: unknown) => {
          options.logger.error({ err: error }, 'collecting metrics failed');
          send(500, 'text/plain', 'collecting metrics failed\n');
        },
      );
      return;
    }
    send(404, 'text/plain', 'not found\n');
  });
  const { host, port } = splitAddress(options.address);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = (server.address() as { port: number }).port;
  options.logger.info(
    { address: options.address, port: bound },
    'ops HTTP listening (/healthz, /readyz, /metrics)',
  );
  return {
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function splitAddress(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  const host = address.slice(0, i).replace(/^\[|\]$/g, '') || '127.0.0.1';
  return { host, port: Number(address.slice(i + 1)) };
}
