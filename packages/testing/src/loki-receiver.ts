import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import { gunzipSync } from 'node:zlib';

/** One line as Loki stored it: its stream's labels, nanosecond timestamp and text. */
export interface LokiLine {
  readonly labels: Readonly<Record<string, string>>;
  /** Nanoseconds since the epoch, as sent (a decimal string). */
  readonly ts: string;
  readonly line: string;
  /** Structured metadata, when the pusher sent any. */
  readonly metadata: Readonly<Record<string, string>> | undefined;
}

/** One push request as received. */
export interface LokiPush {
  readonly headers: IncomingHttpHeaders;
  /** The raw body (decompressed), to search for anything that must never be sent. */
  readonly body: string;
  readonly lines: readonly LokiLine[];
}

export interface LokiReceiver {
  /** The base URL (`http://127.0.0.1:<port>`); pushes go to `/loki/api/v1/push`. */
  readonly url: string;
  readonly pushes: readonly LokiPush[];
  /** Every line received so far, in arrival order. */
  lines(): LokiLine[];
  /** Resolves when a received line satisfies `match` (rejects after `timeoutMs`). */
  waitFor(match: (line: LokiLine) => boolean, timeoutMs?: number): Promise<LokiLine>;
  close(): Promise<void>;
}

export interface LokiReceiverOptions {
  /**
   * `hang`: accept pushes and never answer (a Loki that is stuck); `reject`: answer 400 like a
   * Loki refusing the entries (kept in `pushes` all the same). Default `ok`: 204.
   */
  readonly mode?: 'ok' | 'hang' | 'reject';
  /** Listen on this port (default: any free one), e.g. to bring a "restarted" Loki back. */
  readonly port?: number;
}

/**
 * A real HTTP server speaking Loki's push API (`POST /loki/api/v1/push`, JSON body, optionally
 * gzip-encoded; protobuf+snappy bodies are answered 415, nothing Sluice sends) on 127.0.0.1,
 * any free port. It decodes each push like Loki's distributor does and answers 204, or 400 for a body
 * Loki would refuse (missing streams, non-string labels, a timestamp that is not a decimal
 * nanosecond string, a line that is not a string).
 */
export async function startLokiReceiver(options: LokiReceiverOptions = {}): Promise<LokiReceiver> {
  const pushes: LokiPush[] = [];
  const waiters = new Set<() => void>();
  const hanging = new Set<ServerResponse>();
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'POST' || path !== '/loki/api/v1/push') {
      res.writeHead(404).end('404 page not found\n');
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      if (options.mode === 'hang') {
        hanging.add(res);
        return;
      }
      if (!(req.headers['content-type'] ?? '').startsWith('application/json')) {
        res.writeHead(415).end('only application/json pushes are decoded here\n');
        return;
      }
      let raw = Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip') raw = gunzipSync(raw);
      const body = raw.toString('utf8');
      let lines: LokiLine[];
      try {
        lines = decodePush(JSON.parse(body));
      } catch (error) {
        res.writeHead(400).end(`${(error as Error).message}\n`);
        return;
      }
      pushes.push({ headers: req.headers, body, lines });
      if (options.mode === 'reject') res.writeHead(400).end('entry too far behind\n');
      else res.writeHead(204).end();
      for (const wake of waiters) wake();
    });
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  const all = () => pushes.flatMap((p) => p.lines);
  return {
    url: `http://127.0.0.1:${port}`,
    pushes,
    lines: all,
    waitFor(match, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = all().find(match);
          if (!found) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(found);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no matching line reached the Loki receiver within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const res of hanging) res.destroy();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Loki's JSON push body: `{"streams":[{"stream":{labels},"values":[[ts, line, metadata?]]}]}`. */
function decodePush(push: unknown): LokiLine[] {
  const streams = (push as { streams?: unknown }).streams;
  if (!Array.isArray(streams)) throw new Error('push body has no "streams" array');
  const lines: LokiLine[] = [];
  for (const entry of streams as { stream?: unknown; values?: unknown }[]) {
    const labels = entry.stream;
    if (typeof labels !== 'object' || labels === null) throw new Error('stream without labels');
    for (const [name, value] of Object.entries(labels)) {
      if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(name)) throw new Error(`invalid label name "${name}"`);
      if (typeof value !== 'string') throw new Error(`label "${name}" is not a string`);
    }
    if (!Array.isArray(entry.values)) throw new Error('stream without values');
    for (const value of entry.values as unknown[]) {
      if (!Array.isArray(value) || value.length < 2 || value.length > 3) throw new Error('bad entry');
      const [ts, line, metadata] = value as [unknown, unknown, unknown];
      if (typeof ts !== 'string' || !/^\d{1,19}$/.test(ts))
        throw new Error(`timestamp must be a string of nanoseconds, got ${JSON.stringify(ts)}`);
      if (typeof line !== 'string') throw new Error('line is not a string');
      lines.push({
        labels: labels as Record<string, string>,
        ts,
        line,
        metadata: metadata as Record<string, string> | undefined,
      });
    }
  }
  return lines;
}
