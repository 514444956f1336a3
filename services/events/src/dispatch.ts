import { context, type Span, SpanKind, SpanStatusCode, type Tracer, trace } from '@opentelemetry/api';
import { type Change, type ChangeBatch, writerLinks } from '@sluice/changes';
import type { Database } from '@sluice/db';
import { recordingTracerFor } from '@sluice/observability';
import { matchInDatabase, type SqlFilterCheck } from './sql-filter';
import type { Subscriber, TableSubscription } from './subscriber';
import { checkVisibility, type VisibilityCheck } from './visibility';

interface Wanted {
  readonly change: Change;
  readonly sub: TableSubscription;
  /** The visibility check this delivery waits for (none for service_role). */
  readonly check: VisibilityCheck | undefined;
  /** The SQL filter this delivery waits for (filters memory cannot decide; see sql-filter.ts). */
  filter?: SqlFilterCheck;
}

/**
 * Delivers one batch of changes to a set of subscribers: a change is delivered only when the
 * subscriber's filter matches it *and* its RLS check allows the version it carries (the new
 * row of an INSERT or UPDATE, the last row of a DELETE; see visibility.ts), so a filter never
 * tells a subscriber anything about rows it may not see. The in-memory filter runs first only
 * to spare checks: its answer reaches nobody unless the check passes too. One batched check
 * per (subscriber, table), then the events in position order. Every subscriber's position then
 * moves to the end of the batch. A subscriber whose check failed is ended (UNAVAILABLE, resume
 * from its last position) without holding back the others; the failures are returned.
 */
export async function dispatchBatch(
  db: Database,
  subscribers: readonly Subscriber[],
  batch: ChangeBatch,
  signal: AbortSignal,
): Promise<unknown[]> {
  const failures: unknown[] = [];
  const started = performance.now();
  const wanted = new Map<Subscriber, Wanted[]>();
  const checks: VisibilityCheck[] = [];
  for (const subscriber of subscribers) {
    let list: Wanted[] | undefined;
    let byTable: Map<TableSubscription, VisibilityCheck> | undefined;
    for (const change of batch.changes) {
      const sub = subscriber.wants(change);
      if (!sub) continue;
      let check: VisibilityCheck | undefined;
      if (!subscriber.bypassesRls) {
        byTable ??= new Map();
        check = byTable.get(sub);
        if (check) (check.changes as Change[]).push(change);
        else {
          check = { identity: subscriber.identity, table: sub.table, changes: [change] };
          byTable.set(sub, check);
          checks.push(check);
        }
      }
      list ??= [];
      list.push({ change, sub, check });
    }
    if (list) wanted.set(subscriber, list);
  }
  const matched = performance.now();
  if (checks.length > 0) {
    await inStepSpan('sluice.events.visibility', checks.length, () =>
      checkVisibility(db, checks, signal, visibilityParallelism(db)),
    );
  }
  // Filters memory cannot decide go to PostgreSQL, for the versions the subscriber may see only.
  const filters: SqlFilterCheck[] = [];
  for (const [subscriber, list] of wanted) {
    let byTable: Map<TableSubscription, SqlFilterCheck> | undefined;
    for (const w of list) {
      if (!w.sub.sqlFilter || w.check?.error !== undefined) continue;
      if (w.check && !w.check.visible?.has(w.change)) continue;
      byTable ??= new Map();
      let filter = byTable.get(w.sub);
      if (filter) (filter.changes as Change[]).push(w.change);
      else {
        const { where, key } = w.sub.sqlFilter;
        filter = { identity: subscriber.identity, table: w.sub.table, where, key, changes: [w.change] };
        byTable.set(w.sub, filter);
        filters.push(filter);
      }
      w.filter = filter;
    }
  }
  if (filters.length > 0) {
    await inStepSpan('sluice.events.sql_filters', filters.length, () => matchInDatabase(db, filters, signal));
  }
  const checked = performance.now();
  // Delivery spans only beneath a sampled batch (or catch-up call) span; see traceDelivery.
  const tracer = recordingTracerFor('@sluice/events');
  let deliverySpans = 0;
  for (const [subscriber, list] of wanted) {
    const traced: Change[] | undefined = tracer ? [] : undefined;
    const tracedFrom = Date.now();
    for (const { change, sub, check, filter } of list) {
      if (subscriber.closed) break;
      const error = check?.error ?? filter?.error;
      if (error !== undefined) {
        subscriber.failDispatch(error);
        failures.push(error);
        break;
      }
      if (check && !check.visible?.has(change)) continue;
      if (sub.sqlFilter && !filter?.matched?.has(change)) continue;
      subscriber.deliver(change, sub);
      traced?.push(change);
    }
    if (tracer && traced && traced.length > 0) {
      if (deliverySpans++ < MAX_DELIVERY_SPANS) traceDelivery(tracer, subscriber, traced, tracedFrom);
    }
  }
  if (deliverySpans > MAX_DELIVERY_SPANS) {
    trace
      .getActiveSpan()
      ?.setAttribute('sluice.events.untraced_deliveries', deliverySpans - MAX_DELIVERY_SPANS);
  }
  for (const subscriber of subscribers) if (!subscriber.closed) subscriber.advance(batch.until);
  timings.match = matched - started;
  timings.check = checked - matched;
  timings.deliver = performance.now() - checked;
  return failures;
}

/** Most SQL spans a dispatch step (visibility checks, SQL filters) makes beneath a sampled batch. */
const MAX_STEP_SQL_SPANS = 20;

/**
 * Runs a dispatch step that queries per (subscriber, table) inside one INTERNAL span, when the
 * batch is traced. A batch for a thousand subscribers runs a thousand such queries: past
 * MAX_STEP_SQL_SPANS the step's own span stands for them (their count in `sluice.events.queries`)
 * and the statements beneath it make no spans (the step runs under a non-recording copy of its
 * span, which the Database's SQL spans take as "not sampled").
 */
async function inStepSpan<T>(name: string, queries: number, fn: () => Promise<T>): Promise<T> {
  const tracer = recordingTracerFor('@sluice/events');
  if (!tracer) return fn();
  const span = tracer.startSpan(name, { attributes: { 'sluice.events.queries': queries } });
  const active = queries > MAX_STEP_SQL_SPANS ? trace.wrapSpanContext(span.spanContext()) : span;
  try {
    return await context.with(trace.setSpan(context.active(), active), fn);
  } catch (error) {
    span.setStatus({ code: SpanStatusCode.ERROR });
    throw error;
  } finally {
    span.end();
  }
}

/**
 * Most delivery spans one batch makes: a batch reaching thousands of streams would otherwise
 * make thousands of spans; past this, the batch span counts the deliveries left untraced.
 */
const MAX_DELIVERY_SPANS = 100;

/**
 * One PRODUCER span per stream and batch (not per event: with a thousand subscribers that
 * would be a thousand spans per change), for handing the batch's events to the stream's buffer.
 * It is a child of the active span (the feed's batch span, or the Subscribe call while it
 * catches up) and links to the writers of the events it queued, so a trace backend leads from
 * a write to every delivery of it; each event also carries its writer's traceparent to the
 * subscriber. Time spent in the stream's buffer is not part of the span.
 */
function traceDelivery(
  tracer: Tracer,
  subscriber: Subscriber,
  changes: readonly Change[],
  startTime: number,
): void {
  const span: Span = tracer.startSpan('sluice.events.deliver', {
    kind: SpanKind.PRODUCER,
    startTime,
    links: writerLinks(changes),
    attributes: {
      'sluice.events.count': changes.length,
      'sluice.subscriber.role': subscriber.identity.role,
      ...(subscriber.closed ? { 'sluice.subscriber.closed': true } : {}),
    },
  });
  span.end();
}

/** Where the last dispatch spent its time (ms), for the hub's debug log. */
export const timings = { match: 0, check: 0, deliver: 0 };

/** Half the pool: visibility checks may use that many connections at once. */
function visibilityParallelism(db: Database): number {
  const max = (db.pool as unknown as { options: { max?: number } }).options.max ?? 10;
  return Math.max(1, Math.floor(max / 2));
}
