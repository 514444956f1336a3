-- Back to 000007's current-row lookups (sluice.visible_rows and sluice.visible_rows_<oid>).

do $$
declare
  f record;
begin
  for f in
    select p.oid::regprocedure as fn from pg_catalog.pg_proc p
     where p.pronamespace = 'sluice'::regnamespace and p.proname ~ '^visible_versions_[0-9]+$'
  loop
    execute format('drop function %s', f.fn);
  end loop;
end
$$;
drop function sluice.refresh_version_check(regclass);
drop function sluice.create_version_check(regclass);
drop function sluice.version_check_fingerprint(regclass);

create function sluice.visible_rows(
  claims text[],
  target regclass,
  key_columns text[],
  key_types regtype[],
  keys text[]
) returns table (claim_index integer, key text)
language plpgsql
security invoker
-- With a custom plan per execution the lookup would be planned for every claims document again
-- whenever a few keys make the custom plans look cheaper than the generic one. The generic plan
-- lives as long as the session: planned while the table was small it would be a sequential scan
-- and stay one as the table grows, so sequential scans are off for the lookup.
set plan_cache_mode = force_generic_plan
set enable_seqscan = off
as $$
declare
  width integer := coalesce(array_length(key_columns, 1), 0);
  relation text;
  texts text;
  columns text;
  unnests text;
  first_array text;
  params text;
  lookup text;
  prepared text;
  arguments text;
  empty boolean;
  i integer;
begin
  if width = 0 or width <> coalesce(array_length(key_types, 1), 0)
    or coalesce(array_length(keys, 1), 0) <> coalesce(array_length(claims, 1), 0) then
    raise exception 'sluice.visible_rows: key_columns, key_types and keys do not match'
      using errcode = 'invalid_parameter_value';
  end if;
  for i in 1 .. width loop
    if not pg_catalog.has_column_privilege(target, key_columns[i], 'SELECT') then
      raise exception 'permission denied for table %', target using errcode = 'insufficient_privilege';
    end if;
  end loop;
  -- Names resolved now and written schema-qualified, so the prepared text means the same
  -- table and types whatever the search_path when PostgreSQL re-analyses it (after DDL).
  select format('%I.%I', ns.nspname, cl.relname) into relation
  from pg_catalog.pg_class cl join pg_catalog.pg_namespace ns on ns.oid = cl.relnamespace
  where cl.oid = target;
  select string_agg(format('t.%I::text', c.name), ', ' order by c.n),
    string_agg(format('t.%I', c.name), ', ' order by c.n),
    string_agg(format('pg_catalog.unnest($%s::%I.%I[])', c.n + 1, tns.nspname, ty.typname), ', ' order by c.n),
    min(format('$2::%I.%I[]', tns.nspname, ty.typname)), -- the one column's, when width = 1
    string_agg('text[]', ', ' order by c.n)
    into texts, columns, unnests, first_array, params
  from unnest(key_columns, key_types) with ordinality as c(name, type, n)
    join pg_catalog.pg_type ty on ty.oid = c.type
    join pg_catalog.pg_namespace tns on tns.oid = ty.typnamespace;
  lookup := format('select $1, pg_catalog.to_json(array[%s])::text from %s t where %s', texts, relation,
    case when width = 1 then format('%s = any (%s)', columns, first_array)
    else format('(%s) in (select * from rows from (%s))', columns, unnests) end);
  prepared := 'sluice_visible_' || md5(lookup);
  if not exists (select from pg_catalog.pg_prepared_statements s where s.name = prepared) then
    execute format('prepare %I(integer, %s) as %s', prepared, params, lookup);
  end if;
  for i in 1 .. coalesce(array_length(claims, 1), 0) loop
    -- keys[i]: the rows claims[i] asks about, their key values row after row as one text[]
    -- literal; null for the same rows as claims[i - 1].
    if keys[i] is not null then
      if width = 1 then
        arguments := pg_catalog.quote_literal(keys[i]);
      else
        arguments := (
          select string_agg(pg_catalog.quote_literal(array(
            select k.v from unnest(keys[i]::text[]) with ordinality as k(v, n) where k.n % width = c % width
            order by k.n)::text), ', ' order by c)
          from generate_series(1, width) c);
      end if;
      empty := keys[i] = '{}';
    end if;
    continue when arguments is null or empty;
    perform pg_catalog.set_config('request.jwt.claims', claims[i], true);
    return query execute format('execute %I(%s, %s)', prepared, i, arguments);
  end loop;
end
$$;
comment on function sluice.visible_rows(text[], regclass, text[], regtype[], text[]) is
  'Sluice: for each claims document claims[i], which of the rows keys[i] (a text[] literal of their key values, row after row; null: those of claims[i - 1]) the current role can SELECT from `target` under those claims; key is the JSON array of the key columns'' text values.';

revoke all on function sluice.visible_rows(text[], regclass, text[], regtype[], text[]) from public;
grant execute on function sluice.visible_rows(text[], regclass, text[], regtype[], text[])
  to anon, authenticated, service_role;

-- Tables with a single-column key also get a static lookup function of their own (created by
-- sluice.enable_changes, 000008): a PL/pgSQL function with the lookup written out keeps its plan
-- for the session and runs it directly, sparing the EXECUTE of the prepared statement (about
-- 15-25 µs per subscriber and batch). sluice.visible_rows_<table oid>(claims, keys) takes the
-- same arguments and gives the same results as visible_rows; SECURITY INVOKER, so RLS applies to
-- the caller's role and claims exactly as for a Select. The events service calls it when the
-- table has a single-column key and visible_rows otherwise.

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

select sluice.create_visibility_lookup(format('%I.%I', schema, "table")::regclass) from sluice.captured_tables;
