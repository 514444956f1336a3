comment on column sluice.change_log.trace_id is null;
