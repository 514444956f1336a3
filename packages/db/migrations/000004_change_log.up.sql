-- Sluice core: the transactional change log behind the events service.
--
-- An AFTER ROW trigger appends each change of a captured table to sluice.change_log in the
-- writer's own transaction, so a change is logged if and only if its transaction commits, on any
-- PostgreSQL (no replication slot, nothing lost on restart). A statement-level trigger sends
-- NOTIFY sluice_changes as a wake-up only; readers poll as well.
--
-- Readers order changes by (xid, id) and only read rows with xid < pg_snapshot_xmin(pg_current_snapshot()):
-- ids are taken in insert order, not commit order, so a transaction holding a lower id may still
-- commit after a higher one has been read; below the snapshot's xmin every transaction has ended.

create table sluice.change_log (
  id bigint generated always as identity primary key,
  xid xid8 not null default pg_catalog.pg_current_xact_id(),
  schema text not null,
  "table" text not null,
  op text not null check (op in ('INSERT', 'UPDATE', 'DELETE')),
  pk jsonb not null,
  record jsonb,
  old_record jsonb,
  changed_columns text[] not null default '{}',
  actor text,
  tenant_id text,
  trace_id text,
  committed_at timestamptz not null default now()
);
comment on table sluice.change_log is 'Sluice: committed row changes of captured tables, read in (xid, id) order by the events service.';
comment on column sluice.change_log.committed_at is 'Start time of the writing transaction (now()): close to its commit time and never later.';

create index change_log_position_idx on sluice.change_log (xid, id);
create index change_log_committed_at_idx on sluice.change_log (committed_at);

-- Retention deletes old changes; a reader whose position is below this watermark may have missed
-- some and must start again from a snapshot.
create table sluice.change_log_purged (
  singleton boolean primary key default true check (singleton),
  xid xid8,
  id bigint
);
comment on table sluice.change_log_purged is 'Sluice: the highest (xid, id) position deleted by change log retention.';
insert into sluice.change_log_purged (singleton) values (true);

-- Trigger arguments, fixed by sluice.enable_changes: tg_argv[0] is 't' when the table has a
-- tenant_id column, tg_argv[1..] are the primary key columns. Passing them as arguments spares a
-- catalog lookup per row. Security definer: writers need no privilege on the sluice schema.
create function sluice.capture_change() returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  new_row jsonb;
  old_row jsonb;
  key_row jsonb;
  pk jsonb;
  changed text[] := '{}';
  raw_claims text := current_setting('request.jwt.claims', true);
  claims jsonb;
  tenant text;
  i int;
begin
  if tg_op <> 'DELETE' then
    new_row := to_jsonb(new);
  end if;
  if tg_op <> 'INSERT' then
    old_row := to_jsonb(old);
  end if;
  key_row := coalesce(new_row, old_row);
  if tg_nargs = 2 then
    pk := jsonb_build_object(tg_argv[1], key_row -> tg_argv[1]);
  else
    pk := '{}';
    for i in 1 .. tg_nargs - 1 loop
      pk := pk || jsonb_build_object(tg_argv[i], key_row -> tg_argv[i]);
    end loop;
  end if;
  if tg_op = 'UPDATE' then
    select coalesce(array_agg(n.key), '{}') into changed
      from jsonb_each(new_row) n
     where n.value is distinct from old_row -> n.key;
  end if;
  if raw_claims is not null and raw_claims <> '' then
    claims := raw_claims::jsonb;
  end if;
  if tg_argv[0] = 't' then
    tenant := key_row ->> 'tenant_id';
  end if;
  insert into sluice.change_log
    (schema, "table", op, pk, record, old_record, changed_columns, actor, tenant_id, trace_id)
  values (
    tg_table_schema, tg_table_name, tg_op, pk, new_row, old_row, changed,
    claims ->> 'sub',
    coalesce(tenant, claims ->> 'tenant_id'),
    nullif(current_setting('sluice.trace_id', true), '')
  );
  return null;
end
$$;
comment on function sluice.capture_change() is 'Row trigger installed by sluice.enable_changes: appends the change to sluice.change_log.';

create function sluice.notify_changes() returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  -- A wake-up only: identical notifications of one transaction are folded into one at commit.
  perform pg_notify('sluice_changes', '');
  return null;
end
$$;
comment on function sluice.notify_changes() is 'Statement trigger installed by sluice.enable_changes: NOTIFY sluice_changes (empty payload).';

create function sluice.enable_changes(target regclass) returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  pk_columns text[];
  has_tenant boolean;
  args text;
begin
  select array_agg(a.attname::text order by k.ord)
    into pk_columns
    from pg_index i
    cross join lateral unnest(i.indkey) with ordinality as k(attnum, ord)
    join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
   where i.indrelid = target and i.indisprimary;
  if pk_columns is null then
    raise exception 'sluice.enable_changes: table % has no primary key', target
      using errcode = 'invalid_table_definition',
            hint = 'Change capture identifies rows by their primary key; add one first.';
  end if;
  select exists (
    select 1 from pg_attribute
     where attrelid = target and attname = 'tenant_id' and attnum > 0 and not attisdropped
  ) into has_tenant;
  select string_agg(quote_literal(c), ', ') into args from unnest(pk_columns) c;
  execute format('drop trigger if exists sluice_capture_change on %s', target);
  execute format('drop trigger if exists sluice_notify_changes on %s', target);
  execute format(
    'create trigger sluice_capture_change after insert or update or delete on %s '
    'for each row execute function sluice.capture_change(%L, %s)',
    target, case when has_tenant then 't' else 'f' end, args);
  execute format(
    'create trigger sluice_notify_changes after insert or update or delete on %s '
    'for each statement execute function sluice.notify_changes()',
    target);
end
$$;
comment on function sluice.enable_changes(regclass) is 'Captures the table''s changes into sluice.change_log (idempotent; re-run after changing its primary key).';

create function sluice.disable_changes(target regclass) returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  execute format('drop trigger if exists sluice_capture_change on %s', target);
  execute format('drop trigger if exists sluice_notify_changes on %s', target);
end
$$;
comment on function sluice.disable_changes(regclass) is 'Stops capturing the table''s changes (its logged changes stay until retention).';

create view sluice.captured_tables as
  select n.nspname::text as schema, c.relname::text as "table"
    from pg_catalog.pg_trigger t
    join pg_catalog.pg_class c on c.oid = t.tgrelid
    join pg_catalog.pg_namespace n on n.oid = c.relnamespace
   where t.tgname = 'sluice_capture_change'
     and t.tgfoid = 'sluice.capture_change()'::regprocedure;
comment on view sluice.captured_tables is 'Tables whose changes are captured into sluice.change_log.';

create function sluice.changes_enabled(target regclass) returns boolean
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select exists (
    select 1 from pg_trigger
     where tgrelid = target and tgname = 'sluice_capture_change'
       and tgfoid = 'sluice.capture_change()'::regprocedure
  )
$$;
comment on function sluice.changes_enabled(regclass) is 'True when the table''s changes are captured.';

revoke execute on function sluice.capture_change(), sluice.notify_changes(), sluice.enable_changes(regclass),
  sluice.disable_changes(regclass), sluice.changes_enabled(regclass) from public;

-- The service's login role reads the log and runs retention; the request roles never see it.
grant usage on schema sluice to sluice_authenticator;
grant select, delete on sluice.change_log to sluice_authenticator;
grant select, update on sluice.change_log_purged to sluice_authenticator;
grant select on sluice.captured_tables to sluice_authenticator;
grant execute on function sluice.changes_enabled(regclass) to sluice_authenticator;
