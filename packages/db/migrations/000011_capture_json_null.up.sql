-- Sluice core: JSON null and SQL NULL stay apart in the change log.
--
-- The capture trigger logs rows as to_jsonb(new), which writes SQL NULL as JSON null: a json or
-- jsonb column holding JSON null (the value 'null') and one holding SQL NULL logged alike, and
-- readers decoding with jsonb_populate_record turned both into SQL NULL. Now a json/jsonb
-- column that is SQL NULL leaves its key out of the logged row, so a key holding null is a JSON
-- null; readers decode it as such (packages/changes). Which columns are json comes with the
-- trigger's arguments: tg_argv[0] is 't' when the table has a tenant_id column, tg_argv[1] the
-- json/jsonb columns as a text[] literal, tg_argv[2..] the primary key columns.

create or replace function sluice.capture_change() returns trigger
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

create or replace function sluice.enable_changes(target regclass, notify boolean default false) returns void
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

-- Tables captured so far get the new trigger arguments (keeping their NOTIFY trigger, if any).
do $$
declare
  t record;
begin
  for t in
    select format('%I.%I', c.schema, c."table")::regclass as target,
           exists (select 1 from pg_catalog.pg_trigger g
                    where g.tgrelid = format('%I.%I', c.schema, c."table")::regclass
                      and g.tgname = 'sluice_notify_changes') as notify
      from sluice.captured_tables c
  loop
    perform sluice.enable_changes(t.target, t.notify);
  end loop;
end
$$;
