import net from 'node:net';

/**
 * A loopback TCP proxy in front of PostgreSQL for fault tests: it can refuse every connection
 * (the database "down"), cut the open ones, and hold new connections back before connecting them
 * upstream (a slow network for just-opened connections, e.g. a cancel request's).
 */
export interface TcpProxy {
  readonly port: number;
  /** Connections accepted so far (each attempt, whether refused or forwarded). */
  readonly accepted: number;
  /** Connections currently forwarded. */
  readonly open: number;
  /** The same PostgreSQL URL, through the proxy. */
  url(target: string): string;
  /** While down, new connections are closed at once and the open ones are cut. */
  setDown(down: boolean): void;
  /** Holds each new connection this long before forwarding it (0: no delay). */
  setConnectDelay(ms: number): void;
  close(): Promise<void>;
}

/**
 * Starts a proxy forwarding to `targetPort` on 127.0.0.1, listening on an ephemeral loopback
 * port, or on the Unix socket `listen.path` (port 0 then), as a PostgreSQL socket would.
 */
export async function startTcpProxy(targetPort: number, listen: { path?: string } = {}): Promise<TcpProxy> {
  let down = false;
  let connectDelay = 0;
  let accepted = 0;
  const pairs = new Set<{ a: net.Socket; b?: net.Socket }>();
  const server = net.createServer((socket) => {
    accepted++;
    socket.on('error', () => {});
    if (down) {
      socket.destroy();
      return;
    }
    const pair: { a: net.Socket; b?: net.Socket } = { a: socket };
    pairs.add(pair);
    socket.pause();
    const forward = () => {
      if (socket.destroyed || down) {
        socket.destroy();
        pairs.delete(pair);
        return;
      }
      const upstream = net.connect(targetPort, '127.0.0.1');
      pair.b = upstream;
      upstream.on('error', () => socket.destroy());
      socket.on('error', () => upstream.destroy());
      socket.on('close', () => {
        upstream.destroy();
        pairs.delete(pair);
      });
      upstream.on('close', () => socket.destroy());
      socket.pipe(upstream);
      upstream.pipe(socket);
      socket.resume();
    };
    if (connectDelay > 0) setTimeout(forward, connectDelay);
    else forward();
  });
  await new Promise<void>((resolve) =>
    listen.path ? server.listen(listen.path, resolve) : server.listen(0, '127.0.0.1', resolve),
  );
  const port = listen.path ? 0 : (server.address() as net.AddressInfo).port;
  return {
    port,
    get accepted() {
      return accepted;
    },
    get open() {
      return pairs.size;
    },
    url(target) {
      const u = new URL(target);
      u.hostname = '127.0.0.1';
      u.port = String(port);
      u.searchParams.delete('host');
      return u.toString();
    },
    setDown(value) {
      down = value;
      if (value) {
        for (const pair of pairs) {
          pair.a.destroy();
          pair.b?.destroy();
        }
        pairs.clear();
      }
    },
    setConnectDelay(ms) {
      connectDelay = ms;
    },
    async close() {
      for (const pair of pairs) {
        pair.a.destroy();
        pair.b?.destroy();
      }
      pairs.clear();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
