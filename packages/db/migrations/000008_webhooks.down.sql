-- Drops the webhooks service's schema with everything in it (sources, inbox, endpoints,
-- messages, deliveries, attempts, secrets).
drop schema sluice_webhooks cascade;
