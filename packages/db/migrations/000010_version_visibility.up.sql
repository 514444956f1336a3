-- Sluice core: change streams decide Row Level Security on the version of the row they send.
--
-- 000007's lookups asked "can this subscriber SELECT the row *now*?" and then sent the *logged*
-- version: a subscriber could receive versions it never could read (a post inserted as a draft
-- or already soft-deleted, another tenant's version of a row that later moved, a document's
-- drafts from before it was shared), and DELETEs went to everyone. A version is now sent only if
-- the table's SELECT policies, applied to *that version* (rebuilt from the log), let the
-- subscriber's role and claims see it — for DELETE, the row's last version.
--
-- sluice.visible_versions_<table oid>(claims, columns, records, wanted), created by
-- sluice.enable_changes, has the table's policies written out: for each claims document
-- claims[i] it sets request.jwt.claims, rebuilds the versions records[wanted[i]] (text values in
-- `columns` order, cast to the column types) under the table's name, and keeps those for which
--   (permissive SELECT/ALL policies of the current role, OR-ed) AND (restrictive ones, AND-ed)
-- hold, exactly as PostgreSQL combines them; no applicable permissive policy: nothing is
-- visible. A role with BYPASSRLS, the owner of a table without FORCE ROW LEVEL SECURITY, and
-- any role on a table without RLS see every version. SECURITY INVOKER, so functions and
-- subqueries in the policies run as the subscriber, as in a Select. Other tables the policies
-- read (memberships, ...) are read as they are at delivery time.
--
-- The policies are copied at creation, so the function carries a fingerprint of what it was
-- made from (policies, RLS flags, owner, columns) and refuses to answer when the table no longer
-- matches it (SQLSTATE 55000, hint 'sluice_stale_version_check'); the events service then calls
-- sluice.refresh_version_check(table) and asks again. A policy change can never be answered
-- with the old policies.

create function sluice.version_check_fingerprint(target regclass) returns text
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select md5(concat_ws('|', c.relrowsecurity, c.relforcerowsecurity, c.relowner,
    (select string_agg(format('%s:%s', a.attname, a.atttypid), ',' order by a.attnum)
       from pg_attribute a where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped),
    (select string_agg(concat_ws(':', p.polname, p.polcmd, p.polpermissive, p.polroles::text, p.polqual::text),
                       ',' order by p.polname)
       from pg_policy p where p.polrelid = c.oid)))
  from pg_class c where c.oid = target
$$;
comment on function sluice.version_check_fingerprint(regclass) is
  'Sluice: a digest of what a table''s version check is made from (policies, RLS flags, owner, columns).';
grant execute on function sluice.version_check_fingerprint(regclass) to anon, authenticated, service_role;

create function sluice.create_version_check(target regclass) returns void
language plpgsql
-- Only pg_catalog on the path while the policies are deparsed: every other name in them is then
-- written schema-qualified, so the function means the same whatever the caller's search_path.
set search_path = pg_catalog, pg_temp
as $$
declare
  fname text := 'visible_versions_' || target::oid;
  relname text;
  relation text;
  rls boolean;
  forced boolean;
  owner oid;
  columns text[];
  casts text;
  permissive text;
  restrictive text;
  bypass text;
begin
  select c.relname, format('%I.%I', n.nspname, c.relname), c.relrowsecurity, c.relforcerowsecurity, c.relowner
    into relname, relation, rls, forced, owner
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
   where c.oid = target;
  select array_agg(a.attname::text order by a.attnum),
         string_agg(format('$3[w.n][%s]::%s as %I', a.n, format_type(a.atttypid, null), a.attname), ', ' order by a.attnum)
    into columns, casts
    from (select a.*, row_number() over (order by a.attnum) as n
            from pg_attribute a where a.attrelid = target and a.attnum > 0 and not a.attisdropped) a;
  -- A policy applies to the current role when it is for PUBLIC or for a role whose privileges
  -- the current role has (as PostgreSQL decides it); the test is an initplan, once per run.
  select string_agg(case when p.polpermissive then format('(%s and coalesce((%s), false))', p.guard, p.qual) end, ' or '),
         string_agg(case when not p.polpermissive then format('(not %s or coalesce((%s), false))', p.guard, p.qual) end, ' and ')
    into permissive, restrictive
    from (
      select p.polpermissive, pg_get_expr(p.polqual, p.polrelid) as qual,
             case when 0 = any (p.polroles) then 'true'
             else format('(select %s)', (select string_agg(format('pg_catalog.pg_has_role(%s::oid, ''USAGE'')', r), ' or ')
                                          from unnest(p.polroles) r)) end as guard
        from pg_policy p
       where p.polrelid = target and p.polcmd in ('r', '*') and p.polqual is not null
       order by p.polname
    ) p;
  if not rls then
    bypass := 'true';
  else
    bypass := format(
      '(select r.rolbypassrls from pg_catalog.pg_roles r where r.rolname = current_user)%s',
      case when forced then '' else format(' or pg_catalog.pg_has_role(%s::oid, ''USAGE'')', owner) end);
  end if;
  execute format($f$
    create or replace function sluice.%1$I(claims text[], columns text[], records text[], wanted text[])
    returns table (claim_index integer, record_index integer)
    language plpgsql
    security invoker
    -- One plan per session for the lookup, whatever the claims: the policies' initplans
    -- (auth.uid(), membership arrays) are evaluated per run, i.e. per claims document.
    set plan_cache_mode = force_generic_plan
    as $body$
    #variable_conflict use_column
    declare
      sluice_want integer[];
      sluice_claim integer;
      sluice_bypass boolean;
    begin
      if columns is distinct from %2$L::text[] or sluice.version_check_fingerprint(%3$s::oid) is distinct from %4$L then
        raise exception 'sluice: the change visibility check of %% is out of date', %5$L
          using errcode = 'object_not_in_prerequisite_state', hint = 'sluice_stale_version_check';
      end if;
      sluice_bypass := coalesce(%6$s, false);
      for sluice_claim in 1 .. coalesce(pg_catalog.cardinality(claims), 0) loop
        -- wanted[i]: an integer[] literal of the records claims[i] asks about; null: those of claims[i - 1].
        if wanted[sluice_claim] is not null then
          sluice_want := wanted[sluice_claim]::integer[];
        end if;
        continue when sluice_want is null or pg_catalog.cardinality(sluice_want) = 0;
        if sluice_bypass then
          return query select sluice_claim, w from pg_catalog.unnest(sluice_want) w;
          continue;
        end if;
        perform pg_catalog.set_config('request.jwt.claims', claims[sluice_claim], true);
        -- The version is rebuilt under the table's own name, so the policies' column references
        -- (bare, or qualified with the table name inside subqueries) resolve to it.
        return query
          select %7$I."sluice claim", %7$I."sluice record"
            from (select sluice_claim as "sluice claim", w.n as "sluice record", %8$s
                    from pg_catalog.unnest(sluice_want) as w(n)) as %7$I
           where (%9$s) and (%10$s);
      end loop;
    end
    $body$
  $f$, fname, columns, target::oid, sluice.version_check_fingerprint(target), relation, bypass, relname,
    casts, coalesce(permissive, 'false'), coalesce(restrictive, 'true'));
  execute format('comment on function sluice.%I(text[], text[], text[], text[]) is %L', fname,
    format('Sluice: which logged versions of %s each claims document may see under its SELECT policies (created by sluice.enable_changes).', relation));
  execute format('revoke all on function sluice.%I(text[], text[], text[], text[]) from public', fname);
  execute format('grant execute on function sluice.%I(text[], text[], text[], text[]) to anon, authenticated, service_role', fname);
end
$$;
comment on function sluice.create_version_check(regclass) is 'Sluice: (re)creates sluice.visible_versions_<oid>, the table''s SELECT policies applied to logged row versions.';
revoke execute on function sluice.create_version_check(regclass) from public;

-- The events service's way to bring a check up to date after DDL; it may run as any request
-- role, so it only ever regenerates a captured table's check from the catalog, and only when stale.
create function sluice.refresh_version_check(target regclass) returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  fname text := 'visible_versions_' || target::oid;
begin
  if not sluice.changes_enabled(target) then
    raise exception 'sluice: changes of % are not captured', target using errcode = 'object_not_in_prerequisite_state';
  end if;
  -- One refresh at a time per table; the others find it fresh afterwards.
  perform pg_advisory_xact_lock(hashtext('sluice.refresh_version_check'), target::oid::integer);
  -- The fingerprint is written into the function's body: present there means up to date.
  if pg_catalog.to_regprocedure(format('sluice.%I(text[], text[], text[], text[])', fname)) is not null
     and position(sluice.version_check_fingerprint(target) in pg_catalog.pg_get_functiondef(
           pg_catalog.to_regprocedure(format('sluice.%I(text[], text[], text[], text[])', fname)))) > 0 then
    return;
  end if;
  perform sluice.create_version_check(target);
end
$$;
comment on function sluice.refresh_version_check(regclass) is 'Sluice: recreates a captured table''s version check when its policies, RLS flags, owner or columns changed.';
revoke execute on function sluice.refresh_version_check(regclass) from public;
grant execute on function sluice.refresh_version_check(regclass) to sluice_authenticator, anon, authenticated, service_role;

-- enable_changes / disable_changes: the version check replaces 000007's current-row lookups.
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

create or replace function sluice.disable_changes(target regclass) returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  execute format('drop trigger if exists sluice_capture_change on %s', target);
  execute format('drop trigger if exists sluice_notify_changes on %s', target);
  execute format('drop function if exists sluice.%I(text[], text[], text[], text[])', 'visible_versions_' || target::oid);
end
$$;

-- The current-row lookups are gone with the rule they implemented.
do $$
declare
  f record;
begin
  for f in
    select p.oid::regprocedure as fn from pg_catalog.pg_proc p
     where p.pronamespace = 'sluice'::regnamespace and p.proname ~ '^visible_rows_[0-9]+$'
  loop
    execute format('drop function %s', f.fn);
  end loop;
  perform sluice.create_version_check(t.target)
     from (select format('%I.%I', schema, "table")::regclass as target from sluice.captured_tables) t;
end
$$;
drop function sluice.create_visibility_lookup(regclass);
drop function sluice.visible_rows(text[], regclass, text[], regtype[], text[]);
