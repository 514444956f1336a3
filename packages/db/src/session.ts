import { Backoff, retry } from '@sluice/core';
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
  /**
   * Tries at connecting (default 3; 1: no retry) while the server says "not now"
   * (isTransientConnectError), with exponential backoff and full jitter from 100 ms.
   */
  readonly connectAttempts?: number;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_CONNECT_ATTEMPTS = 3;
const CONNECT_RETRY_MIN_MS = 100;
const CONNECT_RETRY_MAX_MS = 1_000;

/**
 * True when a failed connection attempt is worth repeating at once: the server is there but
 * says "not now" — starting up, shutting down or in recovery (57P03), out of connection slots
 * (53300) — or the connection broke during the handshake. Not when nothing listens (refused,
 * no socket file: a retry milliseconds later rarely helps, and the callers that wait for a
 * server — the reconnect loop, readiness — keep their own schedule), and never an error of a
 * statement: connecting has no effect to repeat, running a statement may.
 */
export function isTransientConnectError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const { code } = error as { code?: unknown };
  if (code === '57P03' || code === '53300') return true;
  if (code === 'ECONNRESET' || code === 'EPIPE') return true;
  return /Connection terminated unexpectedly/.test(error.message);
}

/**
 * Opens a session connection, trying again (up to `connectAttempts`, with backoff) while the
 * server answers "not now" (isTransientConnectError: e.g. during a restart). `onLost` is called
 * once, when the connection breaks or ends (after `client.end()` too); the client never emits an
 * unhandled 'error'.
 *
 * @throws the last connection error; every half-open client is closed first.
 */
export async function openSession(
  options: SessionOptions,
  onLost: (error: Error | undefined) => void = () => {},
): Promise<pg.Client> {
  return retry(() => connectSession(options, onLost), {
    attempts: options.connectAttempts ?? DEFAULT_CONNECT_ATTEMPTS,
    initialMs: CONNECT_RETRY_MIN_MS,
    maxMs: CONNECT_RETRY_MAX_MS,
    retryable: isTransientConnectError,
  });
}

async function connectSession(
  options: SessionOptions,
  onLost: (error: Error | undefined) => void,
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
  /** Ceiling of the first retry delay (default 100 ms); it doubles per failed attempt up to maxDelayMs. */
  readonly minDelayMs?: number;
  /** Cap of the retry delay (default 5 s). */
  readonly maxDelayMs?: number;
}

/**
 * A session connection kept open for the life of the owner (LISTEN sessions): one loop connects,
 * waits until the connection is lost, and reconnects with exponential backoff, full jitter (each
 * delay is drawn from [0, d], d doubling per failed attempt; see Backoff) and a cap. At most one
 * connection (or one attempt) exists at any time,
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
    const backoff = new Backoff({ initialMs: this.#minDelay, maxMs: this.#maxDelay });
    while (!this.#closed) {
      if (connection) {
        const upSince = Date.now();
        const error = await connection.lost;
        this.#client = undefined;
        await connection.client.end().catch(() => {});
        if (this.#closed) return;
        logger.warn({ err: error, session: name }, 'database session lost; reconnecting');
        if (Date.now() - upSince >= this.#maxDelay) backoff.reset();
        connection = undefined;
      }
      await this.#sleep(backoff.next());
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
    // One try per loop turn: the loop is the retry, with its own backoff.
    const client = await openSession({ ...this.#options, connectAttempts: 1 }, (error) => onLost(error));
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
