import { context, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import {
  type Change,
  type ChangeBatch,
  ChangeFeed,
  ChangesReason,
  comparePositions,
  type Position,
  readChanges,
  writerLinks,
} from '@sluice/changes';
import { Backoff, SluiceError } from '@sluice/core';
import { type Database, parseTimestamp, releaseClient, type SchemaCatalog } from '@sluice/db';
import { Gauge, metrics } from '@sluice/observability';
import type pg from 'pg';
import type { Logger } from 'pino';
import { Counter } from 'prom-client';
import { changePositionNow, formatChangePosition, parseChangePosition } from '../change-position';
import { EndpointCache, type FanoutEndpoint } from './fanout-endpoints';
import { matchBatch } from './fanout-match';
import { insertRowMessages } from './row-payload';

export interface FanoutDeps {
  readonly pool: pg.Pool;
  readonly db: Database;
  readonly logger: Logger;
  readonly catalog: () => SchemaCatalog;
  /** A direct (session) connection string for the change feed's LISTEN. */
  readonly listenConnectionString: string;
  /** Changes read per transaction (default 500). */
  readonly batchSize?: number;
  /** Look for changes at least this often besides the feed's wake-ups (default 1000 ms). */
  readonly pollIntervalMs?: number;
  /** The wake-up feed's pg_current_snapshot() probe interval (default 20 ms; 0: NOTIFY and polling only). */
  readonly probeIntervalMs?: number;
}

export interface Fanout {
  /** Stops after the batch in hand (its transaction commits or rolls back), then the feed. */
  close(): Promise<void>;
}

const messagesCreated = new Counter({
  name: 'webhooks_fanout_messages_total',
  help: 'Row-change messages (each with its one delivery) created by the fan-out.',
  registers: [metrics],
});

const skipped = new Counter({
  name: 'webhooks_fanout_skipped_total',
  help: 'Row changes the fan-out could not give an endpoint: its RLS check or filter kept failing (skipped after retries), or the change log no longer held them (position expired or log regressed).',
  labelNames: ['reason'],
  registers: [metrics],
});

// Every fan-out of the process reports; the gauge shows the furthest behind.
const running = new Set<FanoutLoop>();
new Gauge({
  name: 'webhooks_fanout_lag_seconds',
  help: 'How far the row-change fan-out is behind: the age of the oldest change it has read but not yet fanned out (0 when caught up), or how long its batches have been failing.',
  registers: [metrics],
  collect() {
    let lag = 0;
    for (const loop of running) lag = Math.max(lag, loop.lagSeconds());
    this.set(lag);
  },
});

// A batch whose RLS checks keep failing for one endpoint is retried at least this many times and
// for at least this long before that endpoint's changes of the batch are given up, so one broken
// policy cannot stop every endpoint, while passing trouble (a connection lost, a table the
// catalog has not reloaded yet) loses nothing.
const MAX_ENDPOINT_FAILURES = 5;
const MAX_ENDPOINT_FAILING_MS = 30_000;
const QUARANTINE_MS = 10 * 60_000;

const CLOSE_GRACE_MS = 5_000;
/** Feed batches kept for the fan-out (see OfferedBatches): at most this many, and changes in all. */
const OFFERED_BATCHES = 64;
const OFFERED_CHANGES = 4_000;

/**
 * The feed's batches kept for the fan-out to take instead of reading the log again, by the
 * position they start after: the newest, at most `maxBatches` and `maxChanges` changes in all
 * (the newest batch always). Bounded by changes, not only batches: an instance whose fan-out
 * another holds never takes any, and 64 full feed batches were 64,000 rows (each with its old
 * version) held for nothing, for as long as it ran.
 */
export class OfferedBatches {
  readonly #batches = new Map<string, ChangeBatch>();
  #changes = 0;

  constructor(
    private readonly maxBatches = OFFERED_BATCHES,
    private readonly maxChanges = OFFERED_CHANGES,
  ) {}

  offer(after: string, batch: ChangeBatch): void {
    this.take(after);
    this.#batches.set(after, batch);
    this.#changes += batch.changes.length;
    for (const [key, old] of this.#batches) {
      if (this.#batches.size <= 1) break;
      if (this.#batches.size <= this.maxBatches && this.#changes <= this.maxChanges) break;
      this.#batches.delete(key);
      this.#changes -= old.changes.length;
    }
  }

  /** The batch that starts after `after`, removed; undefined when none is kept. */
  take(after: string): ChangeBatch | undefined {
    const batch = this.#batches.get(after);
    if (batch) {
      this.#batches.delete(after);
      this.#changes -= batch.changes.length;
    }
    return batch;
  }

  /** Changes held now. */
  get changes(): number {
    return this.#changes;
  }
}

const LOCK_SQL = 'select position from sluice_webhooks.fanout where singleton for update skip locked';

/**
 * Turns captured row changes into per-endpoint messages and deliveries (see row-payload.ts for
 * what a message holds). One fan-out position for the whole service (sluice_webhooks.fanout);
 * each batch is one transaction that locks it (FOR UPDATE SKIP LOCKED: another instance at work
 * is left alone, it will read on itself), reads the change log after it, matches the enabled
 * endpoints (fanout-match.ts: table, operation, filter, start position, the owner's RLS), writes
 * the messages and their deliveries and moves the position to the batch's end, and commits. A
 * crash anywhere rolls all of it back: nothing is lost, nothing is written twice.
 *
 * Changes before an endpoint's start_position, and changes committed before the fan-out first
 * started (its position is created at the log's end), are not for it.
 *
 * Wake-ups: a ChangeFeed of its own (snapshot probe, NOTIFY sluice_changes, polling) says when
 * changes arrive; the fan-out then reads from its stored position, batch after batch, until a
 * read finds nothing new. The fan-out's position is the stored one, not the feed's in-memory
 * head; a feed batch that starts exactly there is used instead of reading the log again.
 */
export async function startFanout(deps: FanoutDeps): Promise<Fanout> {
  const { pool } = deps;
  // The first instance ever starts at the end of the log: endpoints start after their own
  // start_position, and none can start before the fan-out existed.
  await pool.query(
    'insert into sluice_webhooks.fanout (position) values ($1) on conflict (singleton) do nothing',
    [await changePositionNow(pool)],
  );
  const loop = new FanoutLoop(deps);
  const feed = await ChangeFeed.start({
    pool,
    listenConnectionString: deps.listenConnectionString,
    batchSize: 1000,
    probeIntervalMs: deps.probeIntervalMs ?? 20,
    pollIntervalMs: deps.pollIntervalMs ?? 1000,
    logger: deps.logger,
  });
  // The feed's batches follow one another: each starts where the one before ended (the first
  // at the feed's head, read here before its first batch can arrive). A batch that starts at
  // the fan-out's position is the very read the fan-out would make (change windows never change
  // once appended), so it is handed over instead of read again.
  let feedAfter: string | undefined = formatChangePosition(feed.head);
  feed.onBatch((batch) => {
    if (feedAfter !== undefined && batch.changes.length > 0) loop.offer(feedAfter, batch);
    feedAfter = formatChangePosition(batch.until);
    if (batch.changes.length > 0) loop.wake();
  });
  // The log lost windows the feed had read (a restored database): without an error listener the
  // feed would stop there for good; with one it starts again at the log's end (its next batch
  // starts there, unknown here: not handed over). The fan-out's own read meets the same loss and
  // says so (see #fanOnce).
  feed.onError(() => {
    feedAfter = undefined;
    loop.wake();
  });
  loop.start();
  running.add(loop);
  return {
    async close() {
      running.delete(loop);
      await loop.close();
      await feed.close();
    },
  };
}

class FanoutLoop {
  readonly #deps: FanoutDeps;
  readonly #endpoints: EndpointCache;
  readonly #batchSize: number;
  readonly #abort = new AbortController();
  #closed = false;
  #wakePending = true;
  #wakeUp: (() => void) | undefined;
  #loop: Promise<void> | undefined;
  /** Commit time (ms) of the oldest change read but maybe not yet fanned out; undefined: caught up. */
  #oldestPending: number | undefined;
  /** When batches began failing (no change read to date them by); undefined: not failing. */
  #failingSince: number | undefined;
  /** Endpoint id -> failed attempts at the batch after `position`, since when. */
  #failures = new Map<string, { position: string; count: number; since: number }>();
  /** Batches the feed read, by the position they start after (see offer). */
  readonly #offered = new OfferedBatches();
  /** Whether the batch in hand came from the feed (for the debug line). */
  #fromFeed = false;
  /** Endpoint id -> until when its own failures are skipped at once (see #noteFailures). */
  #quarantine = new Map<string, number>();

  constructor(deps: FanoutDeps) {
    this.#deps = deps;
    this.#endpoints = new EndpointCache(deps.catalog, deps.logger);
    this.#batchSize = deps.batchSize ?? 500;
  }

  start(): void {
    this.#loop = this.#run();
  }

  lagSeconds(now = Date.now()): number {
    const since = this.#oldestPending ?? this.#failingSince;
    return since === undefined ? 0 : Math.max(0, now - since) / 1000;
  }

  /** A batch the feed read after `after` ("window:id"); the newest are kept (OfferedBatches). */
  offer(after: string, batch: ChangeBatch): void {
    this.#offered.offer(after, batch);
  }

  wake(): void {
    this.#wakePending = true;
    this.#wakeUp?.();
  }

  /** Lets the batch in hand finish; one still running after CLOSE_GRACE_MS is cancelled (rolled back). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.wake();
    const timer = setTimeout(() => this.#abort.abort(), CLOSE_GRACE_MS);
    try {
      await this.#loop;
    } finally {
      clearTimeout(timer);
    }
  }

  async #run(): Promise<void> {
    const { logger } = this.#deps;
    const backoff = new Backoff({ initialMs: 100, maxMs: 5_000 });
    const pollMs = this.#deps.pollIntervalMs ?? 1000;
    while (!this.#closed) {
      this.#wakePending = false;
      let delay = pollMs;
      try {
        const more = await this.#fanOnce();
        backoff.reset();
        this.#failingSince = undefined;
        if (more) continue;
      } catch (err) {
        this.#failingSince ??= Date.now();
        if (!this.#closed) logger.warn({ err }, 'webhooks fan-out: batch failed; retrying');
        delay = Math.min(backoff.next(), pollMs);
      }
      await this.#sleep(delay);
    }
  }

  /**
   * One batch in one transaction. Returns true when the position moved: more may be waiting
   * right away (a read stops at `batchSize` changes or 16 change windows, and a backlog of small
   * transactions is many windows), so the loop reads again until a read finds nothing new.
   */
  async #fanOnce(): Promise<boolean> {
    const { pool, logger } = this.#deps;
    const client = await pool.connect();
    let broken: unknown;
    try {
      await client.query('begin');
      const locked = await client.query<{ position: string }>(LOCK_SQL);
      const row = locked.rows[0];
      if (!row) {
        // Another instance holds the fan-out: it reads on after its batch itself.
        await client.query('rollback');
        return false;
      }
      const after = parseChangePosition(row.position);
      let changes: readonly Change[];
      let until: Position;
      try {
        const offered = this.#offered.take(row.position);
        this.#fromFeed = offered !== undefined;
        const batch =
          offered ??
          (await readChanges(pool, after, this.#batchSize, { logger, signal: this.#abort.signal }));
        changes = batch.changes;
        until = batch.until;
        const first = changes[0];
        if (first) this.#oldestPending = commitMs(first);
      } catch (error) {
        if (!isLost(error)) throw error;
        // Retention (or a restored database) took changes the fan-out had not handed out: they
        // cannot be delivered; carry on from the log's end rather than stop for good.
        const now = await changePositionNow(pool);
        logger.error(
          { err: error, from: row.position, to: now },
          'webhooks fan-out: the change log no longer holds changes after the fan-out position; row changes were lost, continuing at the end of the log',
        );
        skipped.inc({ reason: (error as SluiceError).reason ?? 'lost' });
        await client.query('update sluice_webhooks.fanout set position = $1, updated_at = now()', [now]);
        await client.query('commit');
        return true;
      }
      if (comparePositions(until, after) === 0) {
        this.#oldestPending = undefined;
        await client.query('rollback');
        return false;
      }
      const created =
        changes.length === 0
          ? 0
          : await inFanoutSpan(changes, () => this.#fanOut(client, row.position, changes));
      await client.query('update sluice_webhooks.fanout set position = $1, updated_at = now()', [
        formatChangePosition(until),
      ]);
      await client.query('commit');
      if (created > 0) messagesCreated.inc(created);
      // A short batch read to the log's end (as it was then): caught up. A full one may leave
      // more, committed no earlier than its last change.
      const last = changes[changes.length - 1];
      this.#oldestPending = last && changes.length >= this.#batchSize ? commitMs(last) : undefined;
      return true;
    } catch (error) {
      broken = error;
      await client.query('rollback').catch(() => {});
      throw error;
    } finally {
      releaseClient(client, broken instanceof SluiceError ? undefined : (broken as Error | undefined));
    }
  }

  /** Matches the batch against the endpoints and writes the messages; returns how many. */
  async #fanOut(client: pg.PoolClient, position: string, changes: readonly Change[]): Promise<number> {
    const { db } = this.#deps;
    const t0 = performance.now();
    const endpoints = await this.#endpoints.load(client);
    if (endpoints.length === 0) return 0;
    const t1 = performance.now();
    const { wanted, failed, checked } = await matchBatch(
      db,
      endpoints,
      changes,
      this.#abort.signal,
      visibilityParallelism(this.#deps.pool),
    );
    this.#noteFailures(failed, checked, position);
    const t2 = performance.now();
    const created = await insertRowMessages(client, wanted);
    this.#deps.logger.debug(
      {
        after: position,
        fromFeed: this.#fromFeed,
        changes: changes.length,
        endpoints: endpoints.length,
        created,
        loadMs: t1 - t0,
        matchMs: t2 - t1,
        insertMs: performance.now() - t2,
      },
      'webhooks fan-out: batch',
    );
    trace.getActiveSpan()?.setAttribute('sluice.webhooks.messages', created);
    return created;
  }

  /**
   * An endpoint whose RLS check or filter failed (or that selects a table the catalog does not
   * know yet) makes the batch fail: it is retried, such failures are often passing. Only a
   * failure of that endpoint's own making — an error its policies or filter raise in SQL (a
   * function its role may not execute, a cast that fails), or a table the catalog still does
   * not know — and not when several endpoints fail and none succeeds, is given up on: once it has
   * failed MAX_ENDPOINT_FAILURES times over MAX_ENDPOINT_FAILING_MS at the same position, its
   * changes of this batch are skipped (logged, counted) and the other endpoints go on. Then for
   * QUARANTINE_MS its failures are skipped at once (a broken policy must not stall every batch);
   * a table the catalog does not know is treated as not selected until the catalog changes.
   * Anything else (connections, timeouts, a pool exhausted) is retried for as long as it lasts:
   * the lag gauge shows it, nothing is skipped.
   */
  #noteFailures(failed: Map<FanoutEndpoint, unknown>, checked: number, position: string): void {
    for (const id of [...this.#failures.keys()]) {
      if (this.#failures.get(id)?.position !== position) this.#failures.delete(id);
    }
    for (const [id, until] of this.#quarantine) if (until <= Date.now()) this.#quarantine.delete(id);
    if (failed.size === 0) return;
    // Several endpoints and every one that needed a check failed: more likely the database (or a
    // table's policy all of them share) than the endpoints; wait for it rather than skip.
    const systemic = failed.size >= 2 && failed.size >= checked;
    const now = Date.now();
    let retry: unknown;
    const givenUp: [FanoutEndpoint, unknown][] = [];
    for (const [endpoint, error] of failed) {
      const own = !systemic && isEndpointsOwn(error);
      if (own && (this.#quarantine.get(endpoint.id) ?? 0) > now) {
        givenUp.push([endpoint, error]);
        continue;
      }
      const previous = this.#failures.get(endpoint.id);
      const same = previous?.position === position;
      const count = same ? previous.count + 1 : 1;
      const since = same ? previous.since : now;
      this.#failures.set(endpoint.id, { position, count, since });
      if (!own || count < MAX_ENDPOINT_FAILURES || now - since < MAX_ENDPOINT_FAILING_MS) {
        retry ??= error;
        continue;
      }
      this.#quarantine.set(endpoint.id, now + QUARANTINE_MS);
      const table = unknownTable(error);
      if (table) (endpoint.unresolved as Set<string>).delete(table);
      givenUp.push([endpoint, error]);
    }
    if (retry !== undefined) {
      throw new SluiceError(
        'UNAVAILABLE',
        'An endpoint owner RLS check or filter failed; the batch is retried',
        { cause: retry },
      );
    }
    // Logged and counted once the batch goes through without them.
    for (const [endpoint, error] of givenUp) {
      this.#deps.logger.error(
        { err: error, endpoint: endpoint.id, after: position },
        'webhooks fan-out: matching keeps failing for this endpoint (owner RLS check, filter, or a table the catalog does not know); its row changes of this batch are skipped',
      );
      skipped.inc({ reason: 'check_failed' });
    }
  }

  #sleep(ms: number): Promise<void> {
    if (this.#wakePending || this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      timer.unref();
      const self = this;
      function done() {
        clearTimeout(timer);
        self.#wakeUp = undefined;
        resolve();
      }
      this.#wakeUp = done;
    });
  }
}

// SQLSTATE classes of errors a policy or filter raises by itself (access, data, function and
// PL/pgSQL errors, constraint and feature errors): the same each time the batch is tried.
const OWN_ERROR_CLASSES = new Set(['0A', '22', '23', '2F', '38', '39', '42', 'P0']);

/** The "schema.table" of a SLUICE_UNKNOWN_TABLE failure (fanout-match.ts), else undefined. */
function unknownTable(error: unknown): string | undefined {
  if (!(error instanceof SluiceError) || error.reason !== 'SLUICE_UNKNOWN_TABLE') return undefined;
  return error.metadata?.table;
}

/** True for an error of the endpoint's own making (see #noteFailures), not the database's state. */
function isEndpointsOwn(error: unknown): boolean {
  const seen = new Set<unknown>();
  for (
    let e = error as { code?: unknown; reason?: unknown; cause?: unknown } | undefined;
    e && !seen.has(e);
  ) {
    seen.add(e);
    if (e.reason === 'SLUICE_UNKNOWN_TABLE') return true;
    if (typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code)) {
      // 42P01 and friends can be a table dropped meanwhile: still the same each time.
      return OWN_ERROR_CLASSES.has(e.code.slice(0, 2));
    }
    e = e.cause as typeof e;
  }
  return false;
}

/** A change's commit time in ms since the epoch (its committed_at as PostgreSQL printed it). */
function commitMs(change: Change): number {
  const t = parseTimestamp(change.committedAt);
  return t ? Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6) : Date.now();
}

/** Retention deleted changes after the position, or the log lost windows already read. */
function isLost(error: unknown): boolean {
  return (
    error instanceof SluiceError &&
    (error.reason === ChangesReason.positionExpired || error.reason === ChangesReason.logRegressed)
  );
}

/**
 * One root CONSUMER span per batch with changes, linked to their writers (as the events
 * service's feed does: a trace backend leads from a write to the webhook made of it); the
 * batch's RLS checks and writes are its children.
 */
async function inFanoutSpan(changes: readonly Change[], fn: () => Promise<number>): Promise<number> {
  const span = trace.getTracer('@sluice/webhooks').startSpan(
    'sluice.webhooks.fanout',
    {
      kind: SpanKind.CONSUMER,
      root: true,
      links: writerLinks(changes),
      attributes: { 'sluice.changes.count': changes.length },
    },
    ROOT_CONTEXT,
  );
  try {
    return await context.with(trace.setSpan(ROOT_CONTEXT, span), fn);
  } catch (error) {
    span.setStatus({ code: SpanStatusCode.ERROR });
    throw error;
  } finally {
    span.end();
  }
}

/** Half the pool: the RLS checks of a batch may use that many connections at once. */
function visibilityParallelism(pool: pg.Pool): number {
  const max = (pool as unknown as { options: { max?: number } }).options.max ?? 10;
  return Math.max(1, Math.floor(max / 2));
}
