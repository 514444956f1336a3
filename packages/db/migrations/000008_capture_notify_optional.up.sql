-- Sluice core: NOTIFY becomes optional for captured tables, off by default; enable_changes also
-- creates the table's RLS lookup function (sluice.create_visibility_lookup, 000007).
--
-- The statement trigger's pg_notify costs every writing transaction a turn on PostgreSQL's
-- global notification queue lock at commit — measured at about a fifth of single-row insert
-- throughput on a captured table. The events service now notices commits by probing
-- pg_current_snapshot() (no table access) every few milliseconds, so the wake-up is only worth
-- it where probing is turned off or slowed down: sluice.enable_changes(t, notify => true).

drop function sluice.enable_changes(regclass);

create function sluice.enable_changes(target regclass, notify boolean default false) returns void
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
  if notify then
    execute format(
      'create trigger sluice_notify_changes after insert or update or delete on %s '
      'for each statement execute function sluice.notify_changes()',
      target);
  end if;
  perform sluice.create_visibility_lookup(target);
end
$$;
comment on function sluice.enable_changes(regclass, boolean) is 'Captures the table''s changes into sluice.change_log (idempotent; re-run after changing its primary key). notify => true also sends NOTIFY sluice_changes at commit (a wake-up for readers that do not probe).';
revoke execute on function sluice.enable_changes(regclass, boolean) from public;

create or replace function sluice.disable_changes(target regclass) returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  execute format('drop trigger if exists sluice_capture_change on %s', target);
  execute format('drop trigger if exists sluice_notify_changes on %s', target);
  if pg_catalog.to_regprocedure(format('sluice.%I(text[], text[])', 'visible_rows_' || target::oid)) is not null then
    execute format('drop function sluice.%I(text[], text[])', 'visible_rows_' || target::oid);
  end if;
end
$$;

-- Tables captured so far keep capturing, without the commit-time NOTIFY, and get their lookup.
do $$
declare
  t record;
begin
  for t in
    select c.oid::regclass as target
      from pg_catalog.pg_trigger g
      join pg_catalog.pg_class c on c.oid = g.tgrelid
     where g.tgname = 'sluice_notify_changes' and g.tgfoid = 'sluice.notify_changes()'::regprocedure
  loop
    execute format('drop trigger sluice_notify_changes on %s', t.target);
  end loop;
  for t in
    select c.oid::regclass as target
      from pg_catalog.pg_trigger g
      join pg_catalog.pg_class c on c.oid = g.tgrelid
     where g.tgname = 'sluice_capture_change' and g.tgfoid = 'sluice.capture_change()'::regprocedure
  loop
    perform sluice.create_visibility_lookup(t.target);
  end loop;
end
$$;
