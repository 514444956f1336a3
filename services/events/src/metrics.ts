import { Gauge, metrics } from '@sluice/observability';
import type { SubscriptionHub } from './hub';

// The events service's gauges, read from every hub of the process when Prometheus scrapes.
const hubs = new Set<SubscriptionHub>();

// A scrape never waits on the database longer than this: the last value is reported instead.
const ROWS_QUERY_MS = 1_000;
let lastChangeLogRows = 0;

new Gauge({
  name: 'events_subscribers',
  help: 'Subscribe streams following the change feed.',
  registers: [metrics],
  collect() {
    let n = 0;
    for (const hub of hubs) n += hub.size;
    this.set(n);
  },
});

new Gauge({
  name: 'events_buffered_events',
  help: 'Messages queued for Subscribe streams, not yet taken by their clients.',
  registers: [metrics],
  collect() {
    let n = 0;
    for (const hub of hubs) n += hub.buffered;
    this.set(n);
  },
});

new Gauge({
  name: 'events_delivery_lag_seconds',
  help: 'How far the change feed is behind the change log: 0 when its last read reached the end, else the time since the last read that did (a backlog, or the database away).',
  registers: [metrics],
  collect() {
    let lag = 0;
    for (const hub of hubs) lag = Math.max(lag, hub.lagSeconds);
    this.set(lag);
  },
});

new Gauge({
  name: 'events_change_log_rows',
  help: 'About how many rows the change log holds (planner statistics scaled to the table size; retention keeps it bounded).',
  registers: [metrics],
  async collect() {
    // Every hub of a process reads the same database: ask through one of them.
    const [hub] = hubs;
    if (!hub) return;
    const rows = await Promise.race([
      hub.changeLogRows().catch(() => undefined),
      new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), ROWS_QUERY_MS).unref()),
    ]);
    if (rows !== undefined) lastChangeLogRows = rows;
    this.set(lastChangeLogRows);
  },
});

/** Reports `hub` in the events gauges until the returned function is called. */
export function registerHub(hub: SubscriptionHub): () => void {
  hubs.add(hub);
  return () => {
    hubs.delete(hub);
  };
}
