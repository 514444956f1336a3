import { metrics } from '@sluice/observability';
import { Counter } from 'prom-client';

// The source label is the source's name, which operators choose (never request data): a
// request for a name that is not a source counts under source="".

export const inboundRequests = new Counter({
  name: 'webhooks_inbound_requests_total',
  help: 'Inbound webhook requests answered, by source and HTTP status.',
  labelNames: ['source', 'status'] as const,
  registers: [metrics],
});

export const inboundRejected = new Counter({
  name: 'webhooks_inbound_rejected_total',
  help: 'Inbound webhook requests refused, by source and reason (bad_signature, stale_timestamp, body_too_large, rate_limited, database_unavailable, ...).',
  labelNames: ['source', 'reason'] as const,
  registers: [metrics],
});
