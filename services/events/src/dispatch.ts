import type { Change, ChangeBatch } from '@sluice/changes';
import type { Database } from '@sluice/db';
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
  if (checks.length > 0) await checkVisibility(db, checks, signal, visibilityParallelism(db));
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
  if (filters.length > 0) await matchInDatabase(db, filters, signal);
  const checked = performance.now();
  for (const [subscriber, list] of wanted) {
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
    }
  }
  for (const subscriber of subscribers) if (!subscriber.closed) subscriber.advance(batch.until);
  timings.match = matched - started;
  timings.check = checked - matched;
  timings.deliver = performance.now() - checked;
  return failures;
}

/** Where the last dispatch spent its time (ms), for the hub's debug log. */
export const timings = { match: 0, check: 0, deliver: 0 };

/** Half the pool: visibility checks may use that many connections at once. */
function visibilityParallelism(db: Database): number {
  const max = (db.pool as unknown as { options: { max?: number } }).options.max ?? 10;
  return Math.max(1, Math.floor(max / 2));
}
