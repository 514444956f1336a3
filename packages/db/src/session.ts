import pg from 'pg';
import type { Logger } from 'pino';

/**
 * The one way Sluice holds a database connection outside a pool checkout: a session connection
 * (LISTEN, the catalog, migrations, a cancel request) opened by openSession/withSession, or kept
 * open across failures by ReconnectingSession; and releaseClient for pool checkouts.
 *
 * The rule they enforce: a pg client emits 'error' whenever its connection breaks (the server
 * shut down or terminated the backend, the network went away), with or without a query running,
 * and an 'error' event nobody listens to crashes the process. So every client gets its listener
 * before it connects and keeps it until it is gone; the failure itself reaches the caller through
 * the query that fails (or, for an idle session, through `onLost`).
 */

export interface SessionOptions {
  readonly connectionString: string;
  readonly applicationName: string;
  /** Gives up connecting after this long (default 10 s): a server that accepts and never answers. */
  readonly connectTimeoutMs?: number;
  /** TCP keepalive, so a silently dead peer is noticed (default true). */
  readonly keepAlive?: boolean;
  /** node-postgres pipelining: queries issued together go out without waiting for each other. */
  readonly pipeline?: boolean;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/**
 * Opens a session connection. `onLost` is called once, when the connection breaks or ends
 * (after `client.end()` too); the client never emits an unhandled 'error'.
 *
 * @throws the connection error; the half-open client is closed first.
 */
export async function openSession(
  options: SessionOptions,
  onLost: (error: Error | undefined) => void = () => {},
): Promise<pg.Client> {
  const client = new pg.Client({
    connectionString: options.connectionString,
    application_name: options.applicationName,
    keepAlive: options.keepAlive ?? true,
    connectionTimeoutMillis: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    ...(options.pipeline ? ({ pipeline: true } as object) : {}),
  });
  let lost = false;
  const lose = (error?: Error) => {
    if (lost) return;
    lost = true;
    onLost(error);
  };
  client.on('error', lose);
  client.on('end', () => lose());
  try {
    await client.connect();
  } catch (error) {
    lost = true; // the caller learns from the rejection, not from onLost
    await client.end().catch(() => {});
    throw error;
  }
  return client;
}

/**
 * Runs `fn` on a session connection of its own and closes it afterwards, whatever happens.
 *
 * @throws what connecting or `fn` throws.
 */
export async function withSession<T>(
  options: SessionOptions,
  fn: (client: pg.Client) => Promise<T>,
): Promise<T> {
  const client = await openSession(options);
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * True when `error` says the connection itself is gone or unusable (socket errors, connection
 * termination, FATAL/PANIC messages, class 08 and 57P0x), as opposed to an ordinary statement
 * error after which the connection serves the next request.
 */
export function isConnectionError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const { code, severity } = error as { code?: unknown; severity?: unknown };
  if (typeof severity === 'string' && typeof code === 'string') {
    return severity === 'FATAL' || severity === 'PANIC' || code.startsWith('08') || code.startsWith('57P');
  }
  // No SQLSTATE: a socket error or node-postgres' "Connection terminated".
  return true;
}

/**
 * Returns a pool checkout. The connection is discarded (release(err): the pool closes it) when
 * `error` broke it, when it is no longer queryable, or when `discard` says its state is unknown
 * (e.g. a cancel request for it may still be on its way); otherwise it goes back to the pool.
 */
export function releaseClient(client: pg.PoolClient, error?: unknown, discard = false): void {
  const state = client as unknown as { _queryable?: boolean; _ending?: boolean };
  const broken =
    discard ||
    state._queryable === false ||
    state._ending === true ||
    (error !== undefined && isConnectionError(error));
  if (!broken) {
    client.release();
    return;
  }
  client.release(error instanceof Error ? error : new Error('connection discarded'));
}

export interface ReconnectingSessionOptions extends SessionOptions {
  /** Names the session in logs. */
  readonly name: string;
  readonly logger: Logger;
  /** Runs on every new connection before it counts as up (e.g. LISTEN); a failure is a failed attempt. */
  readonly setup?: (client: pg.Client) => Promise<void>;
  readonly onNotification?: (message: pg.Notification) => void;
  /** After each connection is up; `reconnected` is false for the first one. */
  readonly onConnected?: (reconnected: boolean) => void;
  /** First retry delay (default 100 ms); it doubles per failed attempt up to maxDelayMs. */
  readonly minDelayMs?: number;
  /** Cap of the retry delay (default 5 s). */
  readonly maxDelayMs?: number;
}

/**
 * A session connection kept open for the life of the owner (LISTEN sessions): one loop connects,
 * waits until the connection is lost, and reconnects with exponential backoff, jitter (each delay
 * is drawn from [d/2, d]) and a cap. At most one connection (or one attempt) exists at any time,
 * and every failed attempt is closed before the next, so an outage never piles up sessions. The
 * backoff starts over only after a connection stayed up for maxDelayMs, so a server that accepts
 * and drops connections at once is not hammered.
 */
export class ReconnectingSession {
  readonly #options: ReconnectingSessionOptions;
  readonly #minDelay: number;
  readonly #maxDelay: number;
  #client: pg.Client | undefined;
  #closed = false;
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #attempts = 0;

  private constructor(options: ReconnectingSessionOptions) {
    this.#options = options;
    this.#minDelay = Math.max(1, options.minDelayMs ?? 100);
    this.#maxDelay = Math.max(this.#minDelay, options.maxDelayMs ?? 5_000);
  }

  /**
   * Connects (the first attempt must succeed: a service does not start without its database)
   * and keeps the session open until close().
   *
   * @throws the first connection's error.
   */
  static async start(options: ReconnectingSessionOptions): Promise<ReconnectingSession> {
    const session = new ReconnectingSession(options);
    const first = await session.#connect();
    options.onConnected?.(false);
    session.#loop = session.#run(first);
    return session;
  }

  /** True while a connection is up. */
  get connected(): boolean {
    return this.#client !== undefined;
  }

  /** Connection attempts made so far, the first included. */
  get attempts(): number {
    return this.#attempts;
  }

  /** Stops reconnecting and closes the connection. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#wake?.();
    await this.#client?.end().catch(() => {});
    await this.#loop;
  }

  async #run(first: Connection): Promise<void> {
    const { logger, name } = this.#options;
    let connection: Connection | undefined = first;
    let delay = this.#minDelay;
    while (!this.#closed) {
      if (connection) {
        const upSince = Date.now();
        const error = await connection.lost;
        this.#client = undefined;
        await connection.client.end().catch(() => {});
        if (this.#closed) return;
        logger.warn({ err: error, session: name }, 'database session lost; reconnecting');
        if (Date.now() - upSince >= this.#maxDelay) delay = this.#minDelay;
        connection = undefined;
      }
      await this.#sleep(delay / 2 + (Math.random() * delay) / 2);
      delay = Math.min(delay * 2, this.#maxDelay);
      if (this.#closed) return;
      try {
        connection = await this.#connect();
      } catch (error) {
        logger.warn({ err: error, session: name }, 'database session: reconnecting failed; retrying');
        continue;
      }
      if (this.#closed) {
        await connection.client.end().catch(() => {});
        return;
      }
      logger.info({ session: name }, 'database session reconnected');
      this.#options.onConnected?.(true);
    }
  }

  async #connect(): Promise<Connection> {
    this.#attempts++;
    let onLost: (error: Error | undefined) => void = () => {};
    const lost = new Promise<Error | undefined>((resolve) => {
      onLost = resolve;
    });
    const client = await openSession(this.#options, (error) => onLost(error));
    const { onNotification, setup } = this.#options;
    if (onNotification) client.on('notification', onNotification);
    try {
      await setup?.(client);
    } catch (error) {
      await client.end().catch(() => {});
      throw error;
    }
    this.#client = client;
    return { client, lost };
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const wake = () => done();
      this.#wake = wake;
      function done() {
        clearTimeout(timer);
        resolve();
      }
    });
  }
}

interface Connection {
  readonly client: pg.Client;
  /** Resolves (with the error, if any) when the connection breaks or ends. */
  readonly lost: Promise<Error | undefined>;
}
