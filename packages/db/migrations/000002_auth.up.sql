-- Sluice core: Supabase-compatible helpers reading the verified JWT claims of the request.
-- The service sets `request.jwt.claims` (transaction-local) to the token's claims as JSON before
-- each request's statements; outside a request the setting is missing or '' and the helpers see '{}'.
--
-- Policies should call them as `(select auth.uid())` so PostgreSQL evaluates them once per
-- statement (an initplan) instead of once per row.

create schema auth;
comment on schema auth is 'Sluice: helpers exposing the request''s JWT claims (auth.uid(), auth.role(), auth.jwt(), auth.tenant_id()).';

create function auth.jwt() returns jsonb
language sql stable
as $$
  select coalesce(nullif(current_setting('request.jwt.claims', true), ''), '{}')::jsonb
$$;
comment on function auth.jwt() is 'The request''s JWT claims as jsonb; ''{}'' outside a request.';

-- A `sub` that is not a uuid (e.g. an external identity provider's user id) yields null rather
-- than an error, so a policy comparing with auth.uid() simply matches nothing.
-- Written as one expression (no FROM clause) so PostgreSQL inlines it into the calling query:
-- a non-inlined SQL function is planned again in every statement that calls it, which made
-- auth.uid() alone cost about as much as a primary-key lookup.
create function auth.uid() returns uuid
language sql stable
as $$
  select case
    when auth.jwt() ->> 'sub' ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
      then (auth.jwt() ->> 'sub')::uuid
  end
$$;
comment on function auth.uid() is 'The request''s user id (claim sub) as uuid; null when absent or not a uuid.';

create function auth.role() returns text
language sql stable
as $$
  select auth.jwt() ->> 'role'
$$;
comment on function auth.role() is 'The request''s role claim (anon, authenticated, service_role, ...); null when absent.';

create function auth.tenant_id() returns uuid
language sql stable
as $$
  select case
    when auth.jwt() ->> 'tenant_id' ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
      then (auth.jwt() ->> 'tenant_id')::uuid
  end
$$;
comment on function auth.tenant_id() is 'The request''s tenant_id claim as uuid; null when absent or not a uuid.';

grant usage on schema auth to anon, authenticated, service_role;
grant execute on function auth.jwt(), auth.uid(), auth.role(), auth.tenant_id()
  to anon, authenticated, service_role;
