drop function sluice.append_change_window(boolean);
alter table sluice.change_log_purged
  drop column window_seq,
  drop column last_id,
  add column xid xid8,
  add column id bigint;
comment on table sluice.change_log_purged is 'Sluice: the highest (xid, id) position deleted by change log retention.';
drop table sluice.change_window;
