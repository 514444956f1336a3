-- Back to one signature; tables captured since keep their (NOTIFY-less) triggers until
-- sluice.enable_changes is run on them again.
drop function sluice.enable_changes(regclass, boolean);

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
revoke execute on function sluice.enable_changes(regclass) from public;

create or replace function sluice.disable_changes(target regclass) returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  execute format('drop trigger if exists sluice_capture_change on %s', target);
  execute format('drop trigger if exists sluice_notify_changes on %s', target);
end
$$;

do $$
declare
  f record;
begin
  for f in
    select p.oid::regprocedure as fn
      from pg_catalog.pg_proc p
      join pg_catalog.pg_namespace n on n.oid = p.pronamespace
     where n.nspname = 'sluice' and p.proname ~ '^visible_rows_[0-9]+$'
  loop
    execute format('drop function %s', f.fn);
  end loop;
end
$$;
