-- Due deliveries are claimed per endpoint (services/webhooks/src/outbound/delivery-store.ts):
-- each enabled endpoint's oldest due deliveries, up to its share, through this index. The
-- single due index it replaces, ordered by next_attempt_at alone, let one endpoint's old backlog
-- (a dead endpoint's, a slow one's at its cap) fill every claim's window, and between two
-- autovacuums its bitmap scans read every dead entry the claims and settles had left (82,000
-- after a minute at 1,000 deliveries/s: 57 ms a claim, and the queue fell behind). Ordered index
-- scans of this one stop at the share and mark dead entries as they pass them.
create index deliveries_endpoint_due_idx on sluice_webhooks.deliveries (endpoint_id, next_attempt_at, id)
  where status = 'pending';
drop index sluice_webhooks.deliveries_due_idx;

-- A queue table: each delivery is inserted, claimed and settled within seconds, leaving two dead
-- row versions behind. Vacuum it after 2 % of its rows changed (the default waits for 20 %).
alter table sluice_webhooks.deliveries set (
  autovacuum_vacuum_scale_factor = 0.02,
  autovacuum_vacuum_insert_scale_factor = 0.02,
  autovacuum_analyze_scale_factor = 0.02
);
