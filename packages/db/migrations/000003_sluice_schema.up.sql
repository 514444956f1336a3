-- Sluice core: the internal `sluice` schema, and the DDL watch that tells running services to
-- reload their schema catalog (as PostgREST does with NOTIFY pgrst).

create schema sluice;
comment on schema sluice is 'Sluice internals; not exposed through the data API.';
revoke all on schema sluice from public;

create function sluice.notify_schema_changed() returns event_trigger
language plpgsql
as $$
begin
  -- The payload is empty: listeners reload the whole catalog. Identical notifications within one
  -- transaction are folded into one by PostgreSQL, so a migration with many statements sends one.
  perform pg_catalog.pg_notify('sluice_schema', '');
end
$$;
comment on function sluice.notify_schema_changed() is 'Event trigger: NOTIFY sluice_schema after DDL so services reload their schema catalog.';

-- Event triggers need a superuser. On a managed database without one the migration still
-- succeeds; services then reload their catalog on restart or on an explicit NOTIFY sluice_schema.
do $$
begin
  create event trigger sluice_schema_changed on ddl_command_end
    execute function sluice.notify_schema_changed();
  create event trigger sluice_schema_dropped on sql_drop
    execute function sluice.notify_schema_changed();
exception when insufficient_privilege then
  raise notice 'sluice: event triggers not created (%); send NOTIFY sluice_schema after DDL to reload the schema catalog', sqlerrm;
end
$$;
