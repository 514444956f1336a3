import { Backoff, SluiceError } from '@sluice/core';
import { ReconnectingSession } from '@sluice/db';
import type pg from 'pg';
import type { Logger } from 'pino';
import { ChangesReason } from './errors';
import { inBatchSpan } from './feed-span';
import { comparePositions, type Position } from './position';
import { type ChangeBatch, currentPosition, readChangesDetailed } from './read-changes';

export interface ChangeFeedOptions {
  /** Pool from @sluice/db createPool (raw text values). */
  readonly pool: pg.Pool;
  /** A direct session connection for LISTEN (not through a transaction-mode pooler). */
  readonly listenConnectionString: string;
  readonly batchSize: number;
  /**
   * How often to look at pg_current_snapshot() (a query that touches no table): the log is read
   * when it changed, i.e. when some transaction started or ended. This is the wake-up for tables
   * captured without NOTIFY (the default); 0 disables it.
   */
  readonly probeIntervalMs: number;
  /** Read at least this often, whatever the probe and NOTIFY say (a safety net). */
  readonly pollIntervalMs: number;
  readonly logger: Logger;
}

type Listener = (batch: ChangeBatch) => Promise<void> | void;
type ErrorListener = (error: SluiceError) => void;

const CHANNEL = 'sluice_changes';
const RECONNECT_MIN_MS = 100;
const RECONNECT_MAX_MS = 5_000;
// When another instance was appending a window (its changes are about to be readable), read
// again soon rather than at the next poll.
const WAITING_MIN_MS = 10;

/**
 * The shared reader of one service instance: reads the change log from the current position on
 * when the snapshot probe sees transactions end (every probeIntervalMs), when woken by NOTIFY
 * sluice_changes on a dedicated session (a ReconnectingSession: one loop, backoff with jitter
 * and a cap; tables captured with notify => true), and at least every pollIntervalMs. Batches go to the listeners in order; the
 * next read waits for them.
 */
export class ChangeFeed {
  readonly #options: ChangeFeedOptions;
  readonly #listeners = new Set<Listener>();
  readonly #errorListeners = new Set<ErrorListener>();
  #head: Position;
  // Identifies the window of #head as read (see readChanges' afterStamp).
  #headStamp: string | undefined;
  #closed = false;
  #wakePending = false;
  #wakeUp: (() => void) | undefined;
  #listen: ReconnectingSession | undefined;
  #loop: Promise<void> | undefined;
  // For lagSeconds(): when the last read that reached the log's end started, and whether the
  // feed is behind now (its last read was full, or failed).
  #caughtUpAt = Date.now();
  #behind = false;

  private constructor(options: ChangeFeedOptions, head: Position) {
    this.#options = options;
    this.#head = head;
  }

  /**
   * Starts the feed at currentPosition(). Resolves once the LISTEN session is up.
   * @throws when the database cannot be reached.
   */
  static async start(options: ChangeFeedOptions): Promise<ChangeFeed> {
    const feed = new ChangeFeed(options, await currentPosition(options.pool));
    feed.#listen = await ReconnectingSession.start({
      name: 'change feed LISTEN',
      connectionString: options.listenConnectionString,
      applicationName: 'sluice-change-feed',
      logger: options.logger,
      minDelayMs: RECONNECT_MIN_MS,
      maxDelayMs: RECONNECT_MAX_MS,
      setup: async (client) => {
        await client.query(`listen ${CHANNEL}`);
      },
      onNotification: (msg) => {
        if (msg.channel === CHANNEL) feed.#wake();
      },
      // Notifications sent while disconnected are lost: read now.
      onConnected: (reconnected) => {
        if (reconnected) feed.#wake();
      },
    });
    feed.#loop = feed.#run();
    return feed;
  }

  /** Latest `until` processed. */
  get head(): Position {
    return this.#head;
  }

  /**
   * How far the feed is behind the log, in seconds: 0 while its last read reached the log's
   * end; otherwise the time since the start of the last read that did (a backlog being read in
   * full batches, or reads failing while the database is away).
   */
  lagSeconds(now = Date.now()): number {
    return this.#behind ? Math.max(0, now - this.#caughtUpAt) / 1000 : 0;
  }

  /**
   * Calls `listener` with each batch, in order, awaited before the next read; batches whose
   * `until` advanced are delivered even without changes (a heartbeat position). A throwing listener
   * is logged, not fatal. Returns the unsubscribe function.
   */
  onBatch(listener: Listener): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /**
   * Calls `listener` when the feed cannot go on from its head without skipping changes: the
   * change log lost windows the feed had read (SluiceError UNAVAILABLE, reason
   * SLUICE_CHANGE_LOG_REGRESSED). The listener must end every stream that follows the feed with
   * that error; the feed then starts again at the log's current end. Without an error listener
   * the feed never moves past the loss: it keeps retrying (logging the error) and delivers
   * nothing more. Returns the unsubscribe function.
   */
  onError(listener: ErrorListener): () => void {
    this.#errorListeners.add(listener);
    return () => {
      this.#errorListeners.delete(listener);
    };
  }

  /** Stops reading and listening; resolves when the current batch's listeners have finished. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#wake();
    await this.#loop;
    await this.#listen?.close();
  }

  #wake(): void {
    this.#wakePending = true;
    this.#wakeUp?.();
  }

  async #run(): Promise<void> {
    const { pool, batchSize, pollIntervalMs, logger } = this.#options;
    let waitingDelay = WAITING_MIN_MS;
    // A failed read is retried (reading from the head again repeats nothing that matters: at
    // most one more change window is appended) with exponential backoff and full jitter.
    const errorBackoff = new Backoff({ initialMs: RECONNECT_MIN_MS, maxMs: RECONNECT_MAX_MS });
    const probing = this.#options.probeIntervalMs > 0;
    let seen: string | undefined;
    while (!this.#closed) {
      this.#wakePending = false;
      let delay = pollIntervalMs;
      let read = false;
      const started = Date.now();
      try {
        let waiting = false;
        for (;;) {
          const readStarted = Date.now();
          const result = await readChangesDetailed(pool, this.#head, batchSize, {
            logger,
            ...(this.#headStamp !== undefined ? { afterStamp: this.#headStamp } : {}),
          });
          const { batch } = result;
          // The probe's reference: a transaction ending after the read's start changes it.
          if (probing) seen ??= result.snapshotBefore;
          const advanced = comparePositions(batch.until, this.#head) !== 0;
          this.#head = batch.until;
          this.#headStamp = result.untilStamp;
          read ||= batch.changes.length > 0;
          if (batch.changes.length > 0 || advanced) {
            // A span per batch with changes, its listeners' work beneath it (feed-span.ts).
            await inBatchSpan(batch, readStarted, () => this.#deliver(batch));
          }
          this.#behind = result.full;
          if (!result.full) this.#caughtUpAt = readStarted;
          if (!result.full || this.#closed) {
            waiting = result.waiting;
            break;
          }
        }
        errorBackoff.reset();
        if (waiting) {
          delay = Math.min(waitingDelay, pollIntervalMs);
          waitingDelay = Math.min(waitingDelay * 2, pollIntervalMs);
        } else {
          waitingDelay = WAITING_MIN_MS;
        }
      } catch (error) {
        this.#behind = true;
        if (error instanceof SluiceError && error.reason === ChangesReason.logRegressed) {
          await this.#regressed(error);
        } else {
          logger.warn({ err: error }, 'change feed: reading the change log failed; retrying');
        }
        delay = Math.min(errorBackoff.next(), pollIntervalMs);
      }
      // After a read with changes whose listeners took longer than a probe interval, more changes
      // have most likely come meanwhile: read again at once rather than wait for the probe.
      if (read && probing && Date.now() - started >= this.#options.probeIntervalMs) {
        seen = undefined;
        continue;
      }
      await this.#waitForChanges(delay, seen);
      seen = undefined;
    }
  }

  /**
   * The log lost windows the feed had read. Never skip silently: the error listeners end the
   * streams that followed the feed, then the feed starts again at the log's end. With no error
   * listener the head stays where it is (nothing more is delivered) and the read is retried.
   */
  async #regressed(error: SluiceError): Promise<void> {
    const { logger, pool } = this.#options;
    if (this.#errorListeners.size === 0) {
      logger.error(
        { err: error, head: positionText(this.#head) },
        'change feed: the change log lost windows already read; not reading on',
      );
      return;
    }
    logger.error(
      { err: error, head: positionText(this.#head) },
      'change feed: the change log lost windows already read; ending the streams and starting again at its end',
    );
    for (const listener of [...this.#errorListeners]) {
      try {
        listener(error);
      } catch (e) {
        logger.error({ err: e }, 'change feed: an error listener failed');
      }
    }
    try {
      this.#head = await currentPosition(pool);
      this.#headStamp = undefined;
    } catch (e) {
      logger.warn({ err: e }, 'change feed: finding the end of the change log failed; retrying');
    }
  }

  /** pg_current_snapshot() as text, or undefined when probing is off. */
  async #probe(): Promise<string | undefined> {
    if (this.#options.probeIntervalMs <= 0) return undefined;
    const { rows } = await this.#options.pool.query<{ s: string }>('select pg_current_snapshot()::text as s');
    return rows[0]?.s;
  }

  /**
   * Sleeps until `maxMs` passed, a NOTIFY arrived, or (probing) the snapshot differs from `seen`.
   * A failed probe ends the wait: the read that follows reports the error.
   */
  async #waitForChanges(maxMs: number, seen: string | undefined): Promise<void> {
    const { probeIntervalMs } = this.#options;
    const deadline = Date.now() + maxMs;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0 || this.#closed) return;
      if (seen === undefined || probeIntervalMs <= 0) {
        await this.#sleep(left);
        return;
      }
      await this.#sleep(Math.min(left, probeIntervalMs));
      if (this.#wakePending || this.#closed) return;
      try {
        if ((await this.#probe()) !== seen) return;
      } catch {
        return;
      }
    }
  }

  async #deliver(batch: ChangeBatch): Promise<void> {
    for (const listener of [...this.#listeners]) {
      try {
        await listener(batch);
      } catch (error) {
        this.#options.logger.error({ err: error }, 'change feed: a batch listener failed');
      }
    }
  }

  #sleep(ms: number): Promise<void> {
    if (this.#wakePending || this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wakeUp = () => {
        this.#wakeUp = undefined;
        done();
      };
    });
  }
}

function positionText(p: Position): string {
  return `${p.window}/${p.id}`;
}
