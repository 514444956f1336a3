import { Gauge, metrics } from '@sluice/observability';
import type { SubscriptionHub } from './hub';

// The events service's gauges, read from every hub of the process when Prometheus scrapes.
const hubs = new Set<SubscriptionHub>();

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

/** Reports `hub` in the events gauges until the returned function is called. */
export function registerHub(hub: SubscriptionHub): () => void {
  hubs.add(hub);
  return () => {
    hubs.delete(hub);
  };
}
