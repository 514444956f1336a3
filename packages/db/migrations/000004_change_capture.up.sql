-- Sluice core: change capture, the transactional change log behind the events service.
--
-- An AFTER ROW trigger (sluice.capture_change, installed by sluice.enable_changes) appends each
-- change of a captured table to sluice.change_log in the writer's own transaction, so a change
-- is logged if and only if its transaction commits, on any PostgreSQL (no replication slot,
-- nothing lost on restart). Change ids come from an uncached identity sequence: a change made
-- after seeing another transaction's commit gets a higher id than all of that transaction's
-- changes. The order in which changes are delivered is given by change windows (the next
-- migration); who may see a change, by the version checks (the one after).
--
-- Rows are logged as jsonb (to_jsonb), except that a json/jsonb column holding SQL NULL leaves
-- its key out: to_jsonb writes SQL NULL as JSON null, and a json column can hold JSON null
-- itself; readers decode a key holding null in a json column as JSON null.
--
-- NOTIFY is opt-in (enable_changes(t, notify => true)): the commit-time notification takes
-- PostgreSQL's global notification queue lock (about a fifth of single-row insert throughput);
-- the events service notices commits by probing pg_current_snapshot() instead.

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
comment on table sluice.change_log is 'Sluice: committed row changes of captured tables, delivered by change window (sluice.change_window), then id.';
comment on column sluice.change_log.committed_at is 'Start time of the writing transaction (now()): close to its commit time and never later.';

-- Window appends find the changes of transactions by xid; retention finds old changes by age.
create index change_log_position_idx on sluice.change_log (xid, id);
create index change_log_committed_at_idx on sluice.change_log (committed_at);

-- Trigger arguments, fixed by sluice.enable_changes: tg_argv[0] is 't' when the table has a
-- tenant_id column, tg_argv[1] the json/jsonb columns as a text[] literal, tg_argv[2..] the
-- primary key columns. Passing them as arguments spares a catalog lookup per row. Security
-- definer: writers need no privilege on the sluice schema.
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
  json_columns text[] := tg_argv[1]::text[];
  json_column text;
  i int;
begin
  -- to_jsonb, unless a json column holds a null: only logged_row can tell JSON null from SQL
  -- NULL there (most tables have no json column, most rows no null in one: no extra cost).
  if tg_op <> 'DELETE' then
    new_row := to_jsonb(new);
    foreach json_column in array json_columns loop
      if new_row -> json_column = 'null'::jsonb then
        new_row := sluice.logged_row(new, json_columns);
        exit;
      end if;
    end loop;
  end if;
  if tg_op <> 'INSERT' then
    old_row := to_jsonb(old);
    foreach json_column in array json_columns loop
      if old_row -> json_column = 'null'::jsonb then
        old_row := sluice.logged_row(old, json_columns);
        exit;
      end if;
    end loop;
  end if;
  key_row := coalesce(new_row, old_row);
  if tg_nargs = 3 then
    pk := jsonb_build_object(tg_argv[2], key_row -> tg_argv[2]);
  else
    pk := '{}';
    for i in 2 .. tg_nargs - 1 loop
      pk := pk || jsonb_build_object(tg_argv[i], key_row -> tg_argv[i]);
    end loop;
  end if;
  if tg_op = 'UPDATE' then
    -- Keys of both rows: a json column that became SQL NULL is missing from the new one.
    select coalesce(array_agg(k), '{}') into changed
      from jsonb_object_keys(new_row || old_row) k
     where new_row -> k is distinct from old_row -> k;
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

-- The row as logged: to_jsonb, minus the keys of json/jsonb columns that are SQL NULL. Only a
-- row with a null among those columns pays for the dynamic check (to_jsonb cannot tell).
create function sluice.logged_row(r anyelement, json_columns text[]) returns jsonb
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  out jsonb := to_jsonb(r);
  maybe text[];
  is_null boolean[];
  i int;
begin
  if cardinality(json_columns) = 0 then
    return out;
  end if;
  maybe := array(select c from unnest(json_columns) c where out -> c = 'null'::jsonb);
  if cardinality(maybe) = 0 then
    return out;
  end if;
  execute format('select array[%s]', (select string_agg(format('($1).%I is null', c), ', ') from unnest(maybe) c))
    into is_null using r;
  for i in 1 .. cardinality(maybe) loop
    if is_null[i] then
      out := out - maybe[i];
    end if;
  end loop;
  return out;
end
$$;
comment on function sluice.logged_row(anyelement, text[]) is 'Sluice: a row as the change log stores it (to_jsonb, without the keys of SQL NULL json/jsonb columns).';
revoke execute on function sluice.logged_row(anyelement, text[]) from public;

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

create function sluice.enable_changes(target regclass, notify boolean default false) returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  pk_columns text[];
  has_tenant boolean;
  json_columns text[];
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
  select coalesce(array_agg(a.attname::text order by a.attnum), '{}') into json_columns
    from pg_attribute a
   where a.attrelid = target and a.attnum > 0 and not a.attisdropped
     and pg_catalog.format_type(a.atttypid, null) in ('json', 'jsonb');
  execute format('drop trigger if exists sluice_capture_change on %s', target);
  execute format('drop trigger if exists sluice_notify_changes on %s', target);
  execute format(
    'create trigger sluice_capture_change after insert or update or delete on %s '
    'for each row execute function sluice.capture_change(%L, %L, %s)',
    target, case when has_tenant then 't' else 'f' end, json_columns, args);
  if notify then
    execute format(
      'create trigger sluice_notify_changes after insert or update or delete on %s '
      'for each statement execute function sluice.notify_changes()',
      target);
  end if;
  perform sluice.create_version_check(target);
end
$$;

comment on function sluice.enable_changes(regclass, boolean) is 'Captures the table''s changes into sluice.change_log (idempotent; re-run after changing its primary key). notify => true also sends NOTIFY sluice_changes at commit (a wake-up for readers that do not probe).';

create function sluice.disable_changes(target regclass) returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  execute format('drop trigger if exists sluice_capture_change on %s', target);
  execute format('drop trigger if exists sluice_notify_changes on %s', target);
  execute format('drop function if exists sluice.%I(text[], text[], text[], text[])', 'visible_versions_' || target::oid);
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

revoke execute on function sluice.capture_change(), sluice.notify_changes(), sluice.enable_changes(regclass, boolean),
  sluice.disable_changes(regclass), sluice.changes_enabled(regclass) from public;

-- The service's login role reads the log and runs retention; the request roles never see it.
grant usage on schema sluice to sluice_authenticator;
grant select, delete on sluice.change_log to sluice_authenticator;
grant select on sluice.captured_tables to sluice_authenticator;
grant execute on function sluice.changes_enabled(regclass) to sluice_authenticator;
