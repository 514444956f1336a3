-- Sluice core: a static RLS lookup function per captured table (single-column primary key).
--
-- sluice.visible_rows (000007) runs a prepared statement through EXECUTE for each claims
-- document, about 15-25 µs per subscriber and batch on top of the lookup itself. A PL/pgSQL
-- function with the lookup written out keeps its plan for the session and runs it directly.
-- sluice.enable_changes creates it as sluice.visible_rows_<table oid>(claims, keys), with the
-- same arguments and results as visible_rows; SECURITY INVOKER, so RLS applies to the caller's
-- role and claims exactly as for a Select. The events service calls it when the table has a
-- single-column key and falls back to visible_rows otherwise.

create function sluice.create_visibility_lookup(target regclass) returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  key_column text;
  key_type text;
  relation text;
  fname text := 'visible_rows_' || target::oid;
begin
  select a.attname, format('%I.%I', tn.nspname, ty.typname), format('%I.%I', n.nspname, c.relname)
    into key_column, key_type, relation
    from pg_index i
    join pg_class c on c.oid = i.indrelid
    join pg_namespace n on n.oid = c.relnamespace
    join pg_attribute a on a.attrelid = i.indrelid and a.attnum = i.indkey[0]
    join pg_type ty on ty.oid = a.atttypid
    join pg_namespace tn on tn.oid = ty.typnamespace
   where i.indrelid = target and i.indisprimary and i.indnkeyatts = 1;
  if pg_catalog.to_regprocedure(format('sluice.%I(text[], text[])', fname)) is not null then
    execute format('drop function sluice.%I(text[], text[])', fname);
  end if;
  if key_column is null then
    return; -- composite key: visible_rows serves it
  end if;
  execute format($f$
    create function sluice.%1$I(claims text[], keys text[])
    returns table (claim_index integer, key text)
    language plpgsql
    security invoker
    -- A few keys would otherwise make PostgreSQL plan each run afresh (custom plans). The one
    -- generic plan lives as long as the session: planned while the table was small it would be a
    -- sequential scan, and stay one as the table grows — a key lookup must use the index.
    set plan_cache_mode = force_generic_plan
    set enable_seqscan = off
    as $body$
    declare
      wanted %2$s[];
      i integer;
    begin
      for i in 1 .. coalesce(pg_catalog.array_length(claims, 1), 0) loop
        -- keys[i]: a text[] literal of the rows claims[i] asks about; null: those of claims[i - 1].
        if keys[i] is not null then
          wanted := keys[i]::%2$s[];
        end if;
        continue when wanted is null or pg_catalog.cardinality(wanted) = 0;
        perform pg_catalog.set_config('request.jwt.claims', claims[i], true);
        return query
          select i, pg_catalog.to_json(array[t.%3$I::text])::text from %4$s t where t.%3$I = any (wanted);
      end loop;
    end
    $body$
  $f$, fname, key_type, key_column, relation);
  execute format('comment on function sluice.%I(text[], text[]) is %L', fname,
    format('Sluice: sluice.visible_rows for %s, with the lookup written out (created by sluice.enable_changes).', relation));
  execute format('revoke all on function sluice.%I(text[], text[]) from public', fname);
  execute format('grant execute on function sluice.%I(text[], text[]) to anon, authenticated, service_role', fname);
end
$$;
comment on function sluice.create_visibility_lookup(regclass) is 'Sluice: (re)creates sluice.visible_rows_<oid> for a table with a single-column primary key; drops it otherwise.';
revoke execute on function sluice.create_visibility_lookup(regclass) from public;

create or replace function sluice.enable_changes(target regclass, notify boolean default false) returns void
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

-- Tables captured so far get theirs now.
do $$
declare
  t record;
begin
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
