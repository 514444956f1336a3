import { metrics } from '@sluice/observability';
import { Counter } from 'prom-client';

export const consumerEventsSent = new Counter({
  name: 'webhooks_consumer_events_sent_total',
  help: 'Inbound events sent to Consume streams (redeliveries after a lease included).',
  registers: [metrics],
});

export const consumerAcked = new Counter({
  name: 'webhooks_consumer_acked_total',
  help: 'Inbound events newly acknowledged by consumers (Ack).',
  registers: [metrics],
});
