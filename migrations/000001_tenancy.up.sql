-- Reference application, part 1: tenants, user profiles, memberships with roles, and the policy
-- helpers every later table's Row Level Security uses.
--
-- Requires Sluice's core schema (roles anon/authenticated/service_role and auth.uid()).

create table public.tenants (
  id uuid primary key default gen_random_uuid(),
  name text not null,
  slug text not null unique,
  created_at timestamptz not null default now()
);
comment on table public.tenants is 'Organisations. Every tenant-owned row carries a tenant_id; users see a tenant through a membership.';

create table public.profiles (
  id uuid primary key,
  display_name text not null,
  email text unique,
  created_at timestamptz not null default now()
);
comment on table public.profiles is 'Users, one row per identity; id is the JWT sub (auth.uid()).';
comment on column public.profiles.id is 'The user id: the sub claim of the user''s tokens.';

create table public.tenant_memberships (
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  user_id uuid not null references public.profiles (id) on delete cascade,
  role text not null check (role in ('admin', 'editor', 'viewer')),
  created_at timestamptz not null default now(),
  primary key (tenant_id, user_id)
);
comment on table public.tenant_memberships is 'Who belongs to which tenant, as admin (manages members), editor (writes content) or viewer (reads).';

-- Every policy asks "which tenants is the current user in, with which role": this index answers
-- from the index alone.
create index tenant_memberships_user_idx on public.tenant_memberships (user_id, tenant_id, role);

-- Policy helpers. They are SECURITY DEFINER so that reading tenant_memberships from a policy does
-- not apply tenant_memberships' own policies (which would recurse), and they pin search_path so a
-- caller cannot redirect the names they use. They only ever answer about the current user.
create schema app;
comment on schema app is 'Reference application internals: helpers for Row Level Security policies and triggers.';
revoke all on schema app from public;
grant usage on schema app to anon, authenticated, service_role;

-- They are PL/pgSQL rather than SQL: a SECURITY DEFINER SQL function cannot be inlined and is
-- planned afresh in every statement that calls it, while PL/pgSQL keeps its plans for the
-- session. Read policies use the array forms once per statement, e.g.
--   tenant_id = any ((select app.member_tenant_ids())::uuid[])
-- (an initplan: the function runs once, each row is a cheap array test); the boolean forms
-- remain for write checks on a single row.

-- Tenants of the current user whose role is one of `roles`.
create function app.tenant_ids_with_role(roles text[]) returns uuid[]
language plpgsql stable security definer
set search_path = ''
as $$
begin
  return (
    select coalesce(array_agg(m.tenant_id), '{}')
    from public.tenant_memberships m
    where m.user_id = auth.uid() and m.role = any (roles)
  );
end
$$;
comment on function app.tenant_ids_with_role(text[]) is 'Tenants in which the current user holds one of the roles.';

create function app.member_tenant_ids() returns uuid[]
language plpgsql stable security definer
set search_path = ''
as $$
begin
  return app.tenant_ids_with_role(array['admin', 'editor', 'viewer']);
end
$$;
comment on function app.member_tenant_ids() is 'Tenants the current user belongs to. Use as `tenant_id = any ((select app.member_tenant_ids())::uuid[])`: evaluated once per statement.';

create function app.editor_tenant_ids() returns uuid[]
language plpgsql stable security definer
set search_path = ''
as $$
begin
  return app.tenant_ids_with_role(array['admin', 'editor']);
end
$$;
comment on function app.editor_tenant_ids() is 'Tenants in which the current user is an editor or admin.';

create function app.admin_tenant_ids() returns uuid[]
language plpgsql stable security definer
set search_path = ''
as $$
begin
  return app.tenant_ids_with_role(array['admin']);
end
$$;
comment on function app.admin_tenant_ids() is 'Tenants in which the current user is an admin.';

create function app.member_role(tenant uuid) returns text
language plpgsql stable security definer
set search_path = ''
as $$
begin
  return (
    select m.role from public.tenant_memberships m
    where m.tenant_id = tenant and m.user_id = auth.uid()
  );
end
$$;
comment on function app.member_role(uuid) is 'The current user''s role in the tenant (admin, editor, viewer), or null when not a member.';

create function app.is_member(tenant uuid) returns boolean
language plpgsql stable security definer
set search_path = ''
as $$
begin
  return app.member_role(tenant) is not null;
end
$$;
comment on function app.is_member(uuid) is 'Whether the current user is a member of the tenant (any role).';

create function app.can_edit(tenant uuid) returns boolean
language plpgsql stable security definer
set search_path = ''
as $$
begin
  return coalesce(app.member_role(tenant) in ('admin', 'editor'), false);
end
$$;
comment on function app.can_edit(uuid) is 'Whether the current user is an admin or editor of the tenant.';

create function app.is_admin(tenant uuid) returns boolean
language plpgsql stable security definer
set search_path = ''
as $$
begin
  return coalesce(app.member_role(tenant) = 'admin', false);
end
$$;
comment on function app.is_admin(uuid) is 'Whether the current user is an admin of the tenant.';

revoke execute on function app.tenant_ids_with_role(text[]), app.member_tenant_ids(), app.editor_tenant_ids(),
  app.admin_tenant_ids(), app.member_role(uuid), app.is_member(uuid), app.can_edit(uuid), app.is_admin(uuid)
  from public;
grant execute on function app.tenant_ids_with_role(text[]), app.member_tenant_ids(), app.editor_tenant_ids(),
  app.admin_tenant_ids(), app.member_role(uuid), app.is_member(uuid), app.can_edit(uuid), app.is_admin(uuid)
  to anon, authenticated, service_role;

-- Row Level Security. service_role bypasses it; anon has no grants on these tables.
alter table public.tenants enable row level security;
alter table public.profiles enable row level security;
alter table public.tenant_memberships enable row level security;

-- Tenants: members read their tenants, admins rename them; creation is for service_role.
create policy tenants_select_member on public.tenants
  for select to authenticated
  using (id = any ((select app.member_tenant_ids())::uuid[]));
create policy tenants_update_admin on public.tenants
  for update to authenticated
  using (app.is_admin(id))
  with check (app.is_admin(id));

-- Profiles: a user sees their own profile and those of people sharing a tenant with them, may
-- create their own profile (sign-up) and update it; nobody else's.
create policy profiles_select_self_or_colleague on public.profiles
  for select to authenticated
  using (
    id = (select auth.uid())
    or id in (
      select m.user_id from public.tenant_memberships m
      where m.tenant_id = any ((select app.member_tenant_ids())::uuid[])
    )
  );
create policy profiles_insert_self on public.profiles
  for insert to authenticated
  with check (id = (select auth.uid()));
create policy profiles_update_self on public.profiles
  for update to authenticated
  using (id = (select auth.uid()))
  with check (id = (select auth.uid()));

-- Memberships: members see who else is in their tenants; admins manage them.
create policy tenant_memberships_select_member on public.tenant_memberships
  for select to authenticated
  using (tenant_id = any ((select app.member_tenant_ids())::uuid[]));
create policy tenant_memberships_insert_admin on public.tenant_memberships
  for insert to authenticated
  with check (app.is_admin(tenant_id));
create policy tenant_memberships_update_admin on public.tenant_memberships
  for update to authenticated
  using (app.is_admin(tenant_id))
  with check (app.is_admin(tenant_id));
create policy tenant_memberships_delete_admin on public.tenant_memberships
  for delete to authenticated
  using (app.is_admin(tenant_id));

grant select, insert, update, delete on public.tenants, public.profiles, public.tenant_memberships
  to authenticated;
grant all on public.tenants, public.profiles, public.tenant_memberships to service_role;
