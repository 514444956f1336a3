import { metrics } from '@sluice/observability';
import { Counter, Gauge, Histogram } from 'prom-client';

/**
 * The delivery worker's metrics, registered once per process (several workers in one process,
 * as in tests, share them). No endpoint, tenant or URL in labels: only bounded values.
 */

export const deliveriesTotal = new Counter({
  name: 'webhooks_deliveries_total',
  help: 'Outbound delivery attempts, by outcome (succeeded, http_error, timeout, network_error, blocked).',
  labelNames: ['outcome'] as const,
  registers: [metrics],
});

export const deliverySeconds = new Histogram({
  name: 'webhooks_delivery_seconds',
  help: 'Duration of one outbound delivery attempt (connect to the end of the response read).',
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60],
  registers: [metrics],
});

export const deliveryLagSeconds = new Histogram({
  name: 'webhooks_delivery_lag_seconds',
  help: 'Time from a message being created to its successful delivery to an endpoint.',
  buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200, 36000, 86400],
  registers: [metrics],
});

export const deliveriesInFlight = new Gauge({
  name: 'webhooks_deliveries_in_flight',
  help: 'Outbound delivery attempts in flight in this process.',
  registers: [metrics],
});

export const endpointEventsTotal = new Counter({
  name: 'webhooks_endpoint_events_total',
  help: 'Operational events of outbound endpoints (failing, exhausted, disabled, recovered).',
  labelNames: ['event'] as const,
  registers: [metrics],
});

/** Read by the open-breakers gauge at each scrape. */
const breakerSources = new Set<{ openCount(): number }>();

new Gauge({
  name: 'webhooks_breakers_open',
  help: 'Endpoints whose circuit breaker is open or half-open in this process.',
  registers: [metrics],
  collect() {
    let n = 0;
    for (const b of breakerSources) n += b.openCount();
    this.set(n);
  },
});

/** Counts `breakers` in webhooks_breakers_open until the returned function is called. */
export function registerBreakers(breakers: { openCount(): number }): () => void {
  breakerSources.add(breakers);
  return () => {
    breakerSources.delete(breakers);
  };
}
