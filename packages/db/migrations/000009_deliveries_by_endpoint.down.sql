alter table sluice_webhooks.deliveries reset (
  autovacuum_vacuum_scale_factor,
  autovacuum_vacuum_insert_scale_factor,
  autovacuum_analyze_scale_factor
);
create index deliveries_due_idx on sluice_webhooks.deliveries (next_attempt_at) where status = 'pending';
drop index sluice_webhooks.deliveries_endpoint_due_idx;
