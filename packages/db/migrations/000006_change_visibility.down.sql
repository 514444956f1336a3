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
revoke usage on schema sluice from anon, authenticated, service_role;
