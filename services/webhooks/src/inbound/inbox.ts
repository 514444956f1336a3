import type pg from 'pg';
import type { ReceivedEvent } from './receive';
import type { InboundSource } from './sources';

export interface StoredEvent {
  /** inbox.id, as text (bigint). */
  readonly id: string;
  /** True when (source, external id) was stored before: nothing was written this time. */
  readonly duplicate: boolean;
}

// One statement, so one commit, for a batch of events: each is stored whole or not at all, and
// its sender is answered only after the commit. ON CONFLICT makes a copy wait for a concurrent
// first copy (on any instance) to commit, then do nothing. The last join reads the first copy's
// id when that was committed before this statement began.
const INSERT_SQL = `
with batch as (
  select * from unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::jsonb[], $6::bytea[], $7::jsonb[], $8::text[])
    with ordinality as b(source_id, tenant_id, external_id, event_type, headers, body, change, traceparent, n)
),
inserted as (
  insert into sluice_webhooks.inbox (source_id, tenant_id, external_id, event_type, headers, body, change, traceparent)
  select source_id, tenant_id, external_id, event_type, headers, body, change, traceparent from batch order by n
  on conflict (source_id, external_id) do nothing
  returning id, source_id, external_id
)
select b.n::int as n, coalesce(i.id, e.id)::text as id, i.id is null as duplicate
  from batch b
  left join inserted i on i.source_id = b.source_id and i.external_id = b.external_id
  left join sluice_webhooks.inbox e on i.id is null and e.source_id = b.source_id and e.external_id = b.external_id`;

// A copy committed while the insert waited for it is not in that statement's snapshot: a new
// statement sees it.
const EXISTING_SQL = 'select id::text from sluice_webhooks.inbox where source_id = $1 and external_id = $2';

interface Pending {
  readonly key: string;
  readonly source: InboundSource;
  readonly event: ReceivedEvent;
  readonly body: Buffer;
  /** The requests waiting for this event: more than one when copies met in the queue. */
  readonly waiters: { resolve(stored: StoredEvent): void; reject(error: unknown): void }[];
}

export interface InboxWriterOptions {
  /** Insert statements running at once (each holds a pool connection). */
  readonly maxInFlight: number;
  /** Events per statement, and their bodies' bytes at most (one event over it goes alone). */
  readonly maxBatch?: number;
  readonly maxBatchBytes?: number;
}

/**
 * Stores verified events in the inbox, once per (source, external id), resolving only after the
 * row is committed, so a 2xx sent after it is durable.
 *
 * Group commit: while `maxInFlight` statements run, new events wait and then go together in
 * one statement (one round trip, one commit, one WAL flush for all). At low load each event
 * goes at once on its own; under load the batches grow by themselves. A batch that fails for a
 * reason other than the connection is retried event by event, so one event that PostgreSQL
 * refuses does not fail the others.
 */
export class InboxWriter {
  private readonly queue: Pending[] = [];
  private readonly queued = new Map<string, Pending>();
  private inFlight = 0;
  private readonly maxBatch: number;
  private readonly maxBatchBytes: number;

  constructor(
    private readonly pool: pg.Pool,
    private readonly options: InboxWriterOptions,
  ) {
    this.maxBatch = options.maxBatch ?? 256;
    this.maxBatchBytes = options.maxBatchBytes ?? 8 * 1024 * 1024;
  }

  /**
   * Stores one event.
   *
   * @throws the pool's error (connection failures and timeouts: the caller answers 503).
   */
  store(source: InboundSource, event: ReceivedEvent, body: Buffer): Promise<StoredEvent> {
    return new Promise((resolve, reject) => {
      const key = `${source.id}\n${event.externalId}`;
      const copy = this.queued.get(key);
      if (copy) {
        // Another copy waits to be written: this one is its duplicate.
        copy.waiters.push({ resolve: (stored) => resolve({ ...stored, duplicate: true }), reject });
        return;
      }
      const pending: Pending = { key, source, event, body, waiters: [{ resolve, reject }] };
      this.queue.push(pending);
      this.queued.set(key, pending);
      this.pump();
    });
  }

  private pump(): void {
    while (this.inFlight < this.options.maxInFlight && this.queue.length > 0) {
      const batch: Pending[] = [];
      let bytes = 0;
      while (this.queue.length > 0 && batch.length < this.maxBatch) {
        const next = this.queue[0] as Pending;
        if (batch.length > 0 && bytes + next.body.length > this.maxBatchBytes) break;
        this.queue.shift();
        this.queued.delete(next.key);
        batch.push(next);
        bytes += next.body.length;
      }
      this.inFlight++;
      void this.write(batch).finally(() => {
        this.inFlight--;
        this.pump();
      });
    }
  }

  private async write(batch: Pending[]): Promise<void> {
    let results: StoredEvent[];
    try {
      results = await this.insert(batch);
    } catch (error) {
      if (batch.length > 1 && !isUnreachable(error)) {
        // One event may be what PostgreSQL refused: each on its own, so only that one fails.
        await Promise.all(batch.map((p) => this.write([p])));
        return;
      }
      for (const p of batch) for (const w of p.waiters) w.reject(error);
      return;
    }
    batch.forEach((p, i) => {
      for (const w of p.waiters) w.resolve(results[i] as StoredEvent);
    });
  }

  private async insert(batch: Pending[]): Promise<StoredEvent[]> {
    const column = <T>(f: (p: Pending) => T) => batch.map(f);
    const { rows } = await this.pool.query<{
      n: string | number;
      id: string | null;
      duplicate: string | boolean;
    }>({
      text: INSERT_SQL,
      values: [
        column((p) => p.source.id),
        column((p) => p.source.tenantId),
        column((p) => p.event.externalId),
        column((p) => p.event.eventType),
        column((p) => JSON.stringify(p.event.headers)),
        column((p) => p.body),
        column((p) => (p.event.change === null ? null : JSON.stringify(p.event.change))),
        column((p) => p.event.traceparent),
      ],
    });
    const results: (StoredEvent | undefined)[] = new Array(batch.length);
    for (const row of rows) {
      if (row.id !== null)
        results[Number(row.n) - 1] = {
          id: row.id,
          duplicate: row.duplicate === true || row.duplicate === 't',
        };
    }
    // Copies committed by another statement while this one waited on them.
    await Promise.all(
      batch.map(async (p, i) => {
        if (results[i]) return;
        const existing = await this.pool.query<{ id: string }>({
          text: EXISTING_SQL,
          values: [p.source.id, p.event.externalId],
        });
        const id = existing.rows[0]?.id;
        // Gone again already (retention): store it anew.
        results[i] = id ? { id, duplicate: true } : (await this.insert([p]))[0];
      }),
    );
    return results as StoredEvent[];
  }
}

// pg-pool's error when no connection freed up within the acquire timeout.
const POOL_WAIT_TIMEOUT = 'timeout exceeded when trying to connect';

/**
 * True when a statement failed because the database could not be reached or answered in time
 * (the ingress answers 503): connection errors (no SQLSTATE, class 08, 57P0x, FATAL), a pool
 * with no free connection in time, a statement timeout.
 */
export function isUnreachable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (error.message === POOL_WAIT_TIMEOUT) return true;
  const { code, severity } = error as { code?: unknown; severity?: unknown };
  if (typeof code !== 'string' || typeof severity !== 'string') return true;
  return severity === 'FATAL' || severity === 'PANIC' || code.startsWith('08') || code.startsWith('57');
}
