-- Sluice core: change streams decide Row Level Security on the version of the row they send.
--
-- Asking "can this subscriber SELECT the row *now*?" and then sending the *logged* version would
-- hand out versions the subscriber never could read (a post inserted as a draft or already
-- soft-deleted, another tenant's version of a row that later moved, a document's drafts from
-- before it was shared). A version is sent only if the table's SELECT policies, applied to *that
-- version* (rebuilt from the log), let the subscriber's role and claims see it — for DELETE, the
-- row's last version.
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
  whole_row boolean;
  casts text;
  mask text;
  branches text := '';
  branch record;
  bypass text;
begin
  select c.relname, format('%I.%I', n.nspname, c.relname), c.relrowsecurity, c.relforcerowsecurity, c.relowner
    into relname, relation, rls, forced, owner
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
   where c.oid = target;
  -- The columns the SELECT policies read (all of them when one reads the whole row), each value
  -- cast to its column's type and given the column's collation where that is not the type's
  -- default, so a policy compares text as it would on the stored row. Rebuilding only these
  -- matters: a version is rebuilt for every claims document that asks about it.
  -- A column a policy reads is recorded in pg_depend; a whole-row reference is not (it shows
  -- only as a Var with attribute number 0 in the policy's expression tree).
  select exists (select 1 from pg_policy p
                  where p.polrelid = target and p.polcmd in ('r', '*')
                    and p.polqual::text ~ '\{VAR :varno [0-9]+ :varattno 0 ')
    into whole_row;
  select array_agg(a.attname::text order by a.attnum),
         coalesce(string_agg(format(', $3[w.n][%s]::%s%s as %I', a.n, format_type(a.atttypid, null),
           case when a.attcollation <> 0 and a.attcollation <> ty.typcollation
             then format(' collate %I.%I', cn.nspname, co.collname) else '' end, a.attname), '' order by a.attnum)
           filter (where whole_row or exists (
             select 1 from pg_depend d join pg_policy p on p.oid = d.objid
              where d.classid = 'pg_policy'::regclass and p.polrelid = target and p.polcmd in ('r', '*')
                and d.refclassid = 'pg_class'::regclass and d.refobjid = target and d.refobjsubid = a.attnum)), '')
    into columns, casts
    from (select a.*, row_number() over (order by a.attnum) as n
            from pg_attribute a where a.attrelid = target and a.attnum > 0 and not a.attisdropped) a
    join pg_type ty on ty.oid = a.atttypid
    left join pg_collation co on co.oid = a.attcollation
    left join pg_namespace cn on cn.oid = co.collnamespace;
  -- Which SELECT policies apply depends on the role, as PostgreSQL decides it when planning:
  -- a policy for PUBLIC, or for a role whose privileges the current role has. Only applicable
  -- policies may be in the query (a function in another role's policy may not even be
  -- executable by this one), so there is one query per set of applicable policies, written as
  -- a mask with one digit per policy; PL/pgSQL plans a branch only when it first runs.
  create temporary table sluice_policies on commit drop as
    select row_number() over (order by p.polname) as n, p.polpermissive as permissive, p.polroles as roles,
           pg_get_expr(p.polqual, p.polrelid) as qual
      from pg_policy p
     where p.polrelid = target and p.polcmd in ('r', '*') and p.polqual is not null;
  select coalesce(string_agg(case when 0 = any (p.roles) then '''1'''
           else format('(case when %s then ''1'' else ''0'' end)',
             (select string_agg(format('pg_catalog.pg_has_role(%s::oid, ''USAGE'')', r), ' or ') from unnest(p.roles) r))
           end, ' || ' order by p.n), '''''')
    into mask from sluice_policies p;
  -- A branch for the mask of every role that exists now; a role whose mask has no branch (made
  -- later) finds the function out of date, and refreshing it adds the branch.
  for branch in
    select distinct m.mask,
           (select string_agg(format('coalesce((%s), false)', p.qual), ' or ' order by p.n)
              from sluice_policies p where p.permissive and substr(m.mask, p.n::integer, 1) = '1') as permissive,
           (select string_agg(format('coalesce((%s), false)', p.qual), ' and ' order by p.n)
              from sluice_policies p where not p.permissive and substr(m.mask, p.n::integer, 1) = '1') as restrictive
      from (
        select coalesce((select string_agg(case when 0 = any (p.roles)
                               or exists (select 1 from unnest(p.roles) r where pg_has_role(role.oid, r, 'USAGE'))
                             then '1' else '0' end, '' order by p.n) from sluice_policies p), '') as mask
          from pg_roles role
      ) m
     order by m.mask
  loop
    branches := branches || format($b$
        elsif sluice_mask = %L then
          %s$b$, branch.mask,
      case when branch.permissive is null then 'null; -- no permissive policy applies: nothing is visible'
      else format($q$return query
            select %1$I."sluice claim", %1$I."sluice record"
              from (select sluice_claim as "sluice claim", w.n as "sluice record"%2$s
                      from pg_catalog.unnest(sluice_want) as w(n)) as %1$I
             where (%3$s) and (%4$s);$q$, relname, casts, branch.permissive, coalesce(branch.restrictive, 'true'))
      end);
  end loop;
  drop table sluice_policies;
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
    -- One plan per session for each branch, whatever the claims: the policies' initplans
    -- (auth.uid(), membership arrays) are evaluated per run, i.e. per claims document.
    set plan_cache_mode = force_generic_plan
    as $body$
    #variable_conflict use_column
    declare
      sluice_want integer[];
      sluice_claim integer;
      sluice_bypass boolean;
      sluice_mask text;
    begin
      if columns is distinct from %2$L::text[] or sluice.version_check_fingerprint(%3$s::oid) is distinct from %4$L then
        raise exception 'sluice: the change visibility check of %% is out of date', %5$L
          using errcode = 'object_not_in_prerequisite_state', hint = 'sluice_stale_version_check';
      end if;
      sluice_bypass := coalesce(%6$s, false);
      sluice_mask := %7$s;
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
        if false then
          null;%8$s
        else
          raise exception 'sluice: the change visibility check of %% has no query for role %%', %5$L, current_user
            using errcode = 'object_not_in_prerequisite_state', hint = 'sluice_stale_version_check';
        end if;
      end loop;
    end
    $body$
  $f$, fname, columns, target::oid, sluice.version_check_fingerprint(target), relation, bypass, mask, branches);
  execute format('comment on function sluice.%I(text[], text[], text[], text[]) is %L', fname,
    format('Sluice: which logged versions of %s each claims document may see under its SELECT policies (created by sluice.enable_changes).', relation));
  execute format('revoke all on function sluice.%I(text[], text[], text[], text[]) from public', fname);
  execute format('grant execute on function sluice.%I(text[], text[], text[], text[]) to anon, authenticated, service_role', fname);
end
$$;
comment on function sluice.create_version_check(regclass) is 'Sluice: (re)creates sluice.visible_versions_<oid>, the table''s SELECT policies applied to logged row versions.';
revoke execute on function sluice.create_version_check(regclass) from public;

-- The events service's way to bring a check up to date after DDL (or for a role made since);
-- it may run as any request role, so it only ever regenerates a captured table's check from
-- the catalog.
create function sluice.refresh_version_check(target regclass) returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  if not sluice.changes_enabled(target) then
    raise exception 'sluice: changes of % are not captured', target using errcode = 'object_not_in_prerequisite_state';
  end if;
  -- One refresh at a time per table (an oid does not fit an integer as it is: shifted into range).
  perform pg_advisory_xact_lock(hashtext('sluice.refresh_version_check'), (target::oid::bigint - 2147483648)::integer);
  perform sluice.create_version_check(target);
end
$$;
comment on function sluice.refresh_version_check(regclass) is 'Sluice: recreates a captured table''s version check (after its policies, RLS flags, owner or columns changed, or for a new role).';
revoke execute on function sluice.refresh_version_check(regclass) from public;
grant execute on function sluice.refresh_version_check(regclass) to sluice_authenticator, anon, authenticated, service_role;

-- Request roles reach the version checks (never the log itself).
grant usage on schema sluice to anon, authenticated, service_role;
