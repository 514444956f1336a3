import type { Change, ChangeBatch } from '@sluice/changes';
import type { Database } from '@sluice/db';
import type { Subscriber, TableSubscription } from './subscriber';
import { checkVisibility, keyOf, type VisibilityCheck } from './visibility';

/**
 * Delivers one batch of changes to a set of subscribers: the in-memory filter first (a
 * subscriber whose filter cannot match a change is never checked for it), then one batched
 * RLS visibility check per (subscriber, table) for INSERTs and UPDATEs, then the events in
 * position order. DELETEs need no check: under RLS they carry only the primary key.
 * Every subscriber's position then moves to the end of the batch.
 */
export async function dispatchBatch(
  db: Database,
  subscribers: readonly Subscriber[],
  batch: ChangeBatch,
  signal: AbortSignal,
): Promise<void> {
  const wanted = new Map<Subscriber, { change: Change; sub: TableSubscription }[]>();
  const checks = new Map<string, VisibilityCheck>();
  for (const change of batch.changes) {
    for (const subscriber of subscribers) {
      const sub = subscriber.wants(change);
      if (!sub) continue;
      const list = wanted.get(subscriber);
      if (list) list.push({ change, sub });
      else wanted.set(subscriber, [{ change, sub }]);
      if (change.op === 'DELETE' || subscriber.bypassesRls) continue;
      const key = `${subscriberId(subscriber)}|${change.schema}.${change.table}`;
      const check = checks.get(key);
      if (check) (check.changes as Change[]).push(change);
      else checks.set(key, { identity: subscriber.identity, table: sub.table, changes: [change] });
    }
  }
  if (checks.size > 0) await checkVisibility(db, [...checks.values()], signal);
  for (const [subscriber, list] of wanted) {
    for (const { change, sub } of list) {
      if (subscriber.closed) break;
      if (change.op !== 'DELETE' && !subscriber.bypassesRls) {
        const check = checks.get(`${subscriberId(subscriber)}|${change.schema}.${change.table}`);
        if (!check?.visible?.has(keyOf(sub.table, change.pk))) continue;
      }
      subscriber.deliver(change, sub);
    }
  }
  for (const subscriber of subscribers) if (!subscriber.closed) subscriber.advance(batch.until);
}

const ids = new WeakMap<Subscriber, number>();
let nextId = 0;
function subscriberId(subscriber: Subscriber): number {
  const known = ids.get(subscriber);
  if (known !== undefined) return known;
  const id = nextId++;
  ids.set(subscriber, id);
  return id;
}
