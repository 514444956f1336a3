-- Back to 000004's capture (json null and SQL NULL logged alike) and 000010's enable_changes.

drop function sluice.logged_row(anyelement, text[]);

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
