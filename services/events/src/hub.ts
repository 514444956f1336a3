import { type ChangeFeed, comparePositions, estimateChangeLogRows, readChanges } from '@sluice/changes';
import { linkedSignal, type SluiceError, sleep } from '@sluice/core';
import { type Database, mapPgError } from '@sluice/db';
import type { Logger } from 'pino';
import { dispatchBatch, timings } from './dispatch';
import type { Subscriber } from './subscriber';

// Longest the feed waits for streams to drain after a batch (see letReadersDrain).
const DRAIN_WAIT_MS = 100;

/**
 * Fans the shared change feed out to every attached subscriber (one log read per batch for all
 * of them). A new subscriber first catches up on its own from its start position, reading the
 * log directly, and attaches only between two feed batches once it has reached the feed's head.
 */
export class SubscriptionHub {
  private readonly attached = new Set<Subscriber>();
  private processing = false;
  private readonly stop = new AbortController();
  private readonly unsubscribe: () => void;
  private readonly unsubscribeErrors: () => void;

  constructor(
    private readonly feed: ChangeFeed,
    private readonly db: Database,
    private readonly batchSize: number,
    private readonly logger: Logger,
  ) {
    this.unsubscribe = feed.onBatch((batch) => this.onBatch(batch));
    // The log lost windows the feed had read (a crash of a non-durable server): the streams
    // following the feed cannot go on without a gap, so they end; clients start again.
    this.unsubscribeErrors = feed.onError((error) => {
      for (const subscriber of this.attached) subscriber.failResumable(error);
      this.attached.clear();
    });
  }

  /** Messages waiting in the attached streams' queues (for the buffered-events metric). */
  get buffered(): number {
    let n = 0;
    for (const subscriber of this.attached) n += subscriber.queue.length;
    return n;
  }

  get size(): number {
    return this.attached.size;
  }

  /** How far the shared feed is behind the change log, in seconds (0 when caught up). */
  get lagSeconds(): number {
    return this.feed.lagSeconds();
  }

  /** About how many rows the change log holds (read from the database's statistics). */
  changeLogRows(): Promise<number> {
    return estimateChangeLogRows(this.db.pool);
  }

  /**
   * Reads the log from the subscriber's position until it reaches the feed's head, then
   * attaches it to the feed. Errors (e.g. OUT_OF_RANGE for an expired position) end the stream.
   */
  async catchUpAndAttach(subscriber: Subscriber, signal: AbortSignal): Promise<void> {
    using linked = linkedSignal(signal, this.stop.signal);
    const combined = linked.signal;
    try {
      // Read at least once, even at the feed's head: the read is what notices a position the
      // log no longer has (SLUICE_CHANGE_LOG_REGRESSED) or has purged (OUT_OF_RANGE).
      let read = false;
      while (!subscriber.closed && !combined.aborted) {
        if (read && !this.processing && comparePositions(subscriber.position, this.feed.head) >= 0) {
          this.attached.add(subscriber);
          return;
        }
        // Catching up is paced by the reader: never read more than its buffer can take, so a
        // client resuming far behind is not ended for a backlog it is reading as fast as it can.
        if (subscriber.queue.overHalf) {
          await sleep(5, { signal: combined });
          continue;
        }
        const limit = Math.max(1, Math.min(this.batchSize, subscriber.queue.room));
        const batch = await readChanges(this.db.pool, subscriber.position, limit, {
          signal: combined,
        });
        read = true;
        const failures = await dispatchBatch(this.db, [subscriber], batch, combined);
        if (failures.length > 0)
          this.logger.warn({ err: failures[0] }, 'visibility check failed; stream ended');
        // Caught up with the log but the feed has not read that far yet: give it a moment.
        if (batch.changes.length === 0 && comparePositions(subscriber.position, this.feed.head) < 0)
          await sleep(10, { signal: combined });
      }
    } catch (error) {
      if (!subscriber.closed && !combined.aborted) subscriber.fail(mapPgError(error));
    }
  }

  detach(subscriber: Subscriber): void {
    this.attached.delete(subscriber);
  }

  /** Ends every stream with `error` (server shutdown). */
  failAll(error: SluiceError): void {
    for (const subscriber of this.attached) subscriber.fail(error);
  }

  close(): void {
    this.stop.abort();
    this.unsubscribe();
    this.unsubscribeErrors();
  }

  /**
   * Gives streams that are over half full a short, bounded time to drain before the feed reads
   * the next batch: a burst larger than a stream's buffer then reaches a client that keeps up,
   * while one that has stopped reading holds the feed back at most DRAIN_WAIT_MS and is ended by
   * the next batch that does not fit.
   */
  private async letReadersDrain(): Promise<void> {
    const deadline = Date.now() + DRAIN_WAIT_MS;
    const busy = () => [...this.attached].some((s) => !s.closed && s.queue.overHalf);
    while (busy() && Date.now() < deadline && !this.stop.signal.aborted) {
      await sleep(2, { signal: this.stop.signal }).catch(() => {});
    }
  }

  private async onBatch(batch: Parameters<Parameters<ChangeFeed['onBatch']>[0]>[0]): Promise<void> {
    this.processing = true;
    const started = performance.now();
    try {
      const failures = await dispatchBatch(this.db, [...this.attached], batch, this.stop.signal);
      if (failures.length > 0)
        this.logger.warn(
          { err: failures[0], streams: failures.length },
          'visibility checks failed; those streams ended',
        );
      this.logger.debug(
        {
          changes: batch.changes.length,
          subscribers: this.attached.size,
          ms: Math.round(performance.now() - started),
          match_ms: Math.round(timings.match),
          check_ms: Math.round(timings.check),
          deliver_ms: Math.round(timings.deliver),
        },
        'batch dispatched',
      );
      for (const subscriber of this.attached) if (subscriber.closed) this.attached.delete(subscriber);
      await this.letReadersDrain();
    } catch (error) {
      // A failed visibility check must not skip changes silently: end the streams, clients resume.
      this.logger.error({ err: error }, 'dispatching a batch failed; ending the streams');
      for (const subscriber of this.attached) subscriber.failDispatch(error);
      this.attached.clear();
    } finally {
      this.processing = false;
    }
  }
}
