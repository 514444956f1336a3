import { createServer, type Server } from 'node:http';

/** A local stand-in for Loki or an OTLP collector: takes every push, counts it, keeps nothing. */
export interface TelemetrySink {
  readonly url: string;
  readonly requests: number;
  readonly bytes: number;
  close(): Promise<void>;
}

/**
 * An HTTP receiver as cheap as possible (it shares the machine with the service being
 * measured): reads each POST body, counts it and answers `status` — 204 as Loki does, 200 with
 * an empty ExportTraceServiceResponse as an OTLP/HTTP collector does. The tests decode pushes with the real
 * receivers in @sluice/testing; the benchmark only needs the traffic to go somewhere real.
 */
export async function startTelemetrySink(status: 200 | 204): Promise<TelemetrySink> {
  let requests = 0;
  let bytes = 0;
  const server: Server = createServer((req, res) => {
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
    });
    req.on('end', () => {
      requests++;
      if (status === 204) {
        res.writeHead(204).end();
        return;
      }
      // An empty ExportTraceServiceResponse in the request's own encoding.
      const protobuf = (req.headers['content-type'] ?? '').includes('protobuf');
      res.writeHead(200, { 'content-type': protobuf ? 'application/x-protobuf' : 'application/json' });
      res.end(protobuf ? undefined : '{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    get requests() {
      return requests;
    },
    get bytes() {
      return bytes;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Fetches `url` every `intervalMs` as Prometheus would, until stopped; counts the scrapes. */
export function startScraper(url: string, intervalMs: number): { readonly scrapes: number; stop(): void } {
  let scrapes = 0;
  let failures = 0;
  const timer = setInterval(() => {
    fetch(url)
      .then(async (res) => {
        await res.text();
        if (res.ok) scrapes++;
        else failures++;
      })
      .catch(() => {
        failures++;
      });
  }, intervalMs);
  return {
    get scrapes() {
      return scrapes;
    },
    stop() {
      clearInterval(timer);
      if (failures > 0) console.log(`  metrics scraper: ${failures} failed scrapes`);
    },
  };
}
