import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { JWK } from 'jose';

/** A real JWKS endpoint on a loopback port: keys can be swapped to simulate rotation. */
export interface JwksServer {
  readonly url: string;
  /** Requests served so far (to observe jose's caching and cooldown). */
  readonly requests: () => number;
  setKeys(keys: readonly JWK[]): void;
  /** Answer with this HTTP status, or never answer ('hang'), instead of serving the keys (undefined). */
  setFailure(failure: number | 'hang' | undefined): void;
  close(): Promise<void>;
}

export async function startJwksServer(keys: readonly JWK[]): Promise<JwksServer> {
  let current = keys;
  let failure: number | 'hang' | undefined;
  let count = 0;
  const server: Server = createServer((request, response) => {
    count += 1;
    if (request.url !== '/.well-known/jwks.json') {
      response.writeHead(404).end();
      return;
    }
    if (failure === 'hang') return;
    if (failure !== undefined) {
      response.writeHead(failure, { 'content-type': 'text/plain' }).end('broken');
      return;
    }
    response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: current }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/.well-known/jwks.json`,
    requests: () => count,
    setKeys(next) {
      current = next;
    },
    setFailure(next) {
      failure = next;
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}
