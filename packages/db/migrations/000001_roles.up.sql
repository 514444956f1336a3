-- Sluice core: the database roles requests run as, and the login role the service uses.
--
-- Roles are cluster-wide: they are shared by every database of the cluster, so they are created
-- only when missing (never dropped by a down migration) and creation tolerates a concurrent
-- migration of another database creating the same role at the same moment.
--
--   anon                  requests without a token (when anonymous access is enabled)
--   authenticated         requests with a user token
--   service_role          trusted backends; bypasses Row Level Security
--   sluice_authenticator  what the service logs in as; it holds no privileges of its own
--                         (NOINHERIT) and switches to one of the three roles per request.
--                         Its password is set by the launcher or operator, never in SQL.

do $$
declare
  r record;
begin
  for r in
    select * from (values
      ('anon', 'nologin'),
      ('authenticated', 'nologin'),
      ('service_role', 'nologin bypassrls'),
      ('sluice_authenticator', 'login noinherit nosuperuser nocreatedb nocreaterole')
    ) as v(name, options)
  loop
    if not exists (select 1 from pg_catalog.pg_roles where rolname = r.name) then
      begin
        execute format('create role %I %s', r.name, r.options);
      exception when duplicate_object or unique_violation then
        -- Another database of this cluster created it concurrently: it exists, which is the goal.
        null;
      end;
    end if;
  end loop;
end
$$;

-- The service may switch to each request role (SET ROLE / set_config('role', ...)).
do $$
declare
  r text;
begin
  foreach r in array array['anon', 'authenticated', 'service_role'] loop
    if not exists (
      select 1
      from pg_catalog.pg_auth_members m
      where m.roleid = (select oid from pg_catalog.pg_roles where rolname = r)
        and m.member = (select oid from pg_catalog.pg_roles where rolname = 'sluice_authenticator')
    ) then
      begin
        execute format('grant %I to sluice_authenticator', r);
      exception when duplicate_object or unique_violation then
        null;
      end;
    end if;
  end loop;
end
$$;

-- A migrating role that is not a superuser (a managed database's owner) also needs to switch to
-- the request roles, e.g. to test policies; a superuser can already switch to any role.
do $$
declare
  r text;
begin
  if (select rolsuper from pg_catalog.pg_roles where rolname = current_user) then
    return;
  end if;
  foreach r in array array['anon', 'authenticated', 'service_role'] loop
    begin
      execute format('grant %I to %I', r, current_user);
    exception when insufficient_privilege or invalid_grant_operation or duplicate_object or unique_violation then
      raise notice 'sluice: could not grant % to %: %', r, current_user, sqlerrm;
    end;
  end loop;
end
$$;

grant usage on schema public to anon, authenticated, service_role;
