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

-- What fellow members of a tenant may see of a user: nothing private lives here.
create table public.profiles (
  id uuid primary key,
  display_name text not null,
  created_at timestamptz not null default now()
);
comment on table public.profiles is 'Users, one row per identity; id is the JWT sub (auth.uid()). Visible to the user and to fellow members of their tenants, so it holds nothing private.';
comment on column public.profiles.id is 'The user id: the sub claim of the user''s tokens.';

-- A user's private fields, readable by that user only. Kept apart from profiles because a policy
-- decides which rows a user sees, not which columns: sharing a tenant must not expose an email.
-- The email is deliberately not unique: a unique constraint on a column others cannot read
-- answers "is this address taken?" to anyone who tries to set it.
create table public.profile_private (
  id uuid primary key references public.profiles (id) on delete cascade,
  email text,
  created_at timestamptz not null default now(),
  updated_at timestamptz
);
comment on table public.profile_private is 'A user''s private fields (email); only the user and service_role read them.';

-- A membership is created by a tenant admin as an invitation (accepted_at null) and counts only
-- once the invited user accepted it: without that, an admin could pull any user id into their
-- tenant and read what fellow members may read about them.
create table public.tenant_memberships (
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  user_id uuid not null references public.profiles (id) on delete cascade,
  role text not null check (role in ('admin', 'editor', 'viewer')),
  created_at timestamptz not null default now(),
  -- The default (accepted) applies to service_role and maintenance writes only; a signed-in
  -- admin's insert is always a pending invitation (app.tenant_memberships_guard).
  accepted_at timestamptz default now(),
  primary key (tenant_id, user_id)
);
comment on table public.tenant_memberships is 'Who belongs to which tenant, as admin (manages members), editor (writes content) or viewer (reads). A row is an invitation until the invited user accepts it (accepted_at); only accepted memberships grant anything.';
comment on column public.tenant_memberships.accepted_at is 'When the invited user accepted; null while the invitation is pending. Set only by the invited user (to now()).';

-- Every policy asks "which tenants is the current user in, with which role": this index answers
-- from the index alone.
create index tenant_memberships_user_idx on public.tenant_memberships (user_id, tenant_id, role)
  where accepted_at is not null;

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
    where m.user_id = auth.uid() and m.role = any (roles) and m.accepted_at is not null
  );
end
$$;
comment on function app.tenant_ids_with_role(text[]) is 'Tenants in which the current user holds one of the roles (accepted memberships only).';

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
    where m.tenant_id = tenant and m.user_id = auth.uid() and m.accepted_at is not null
  );
end
$$;
comment on function app.member_role(uuid) is 'The current user''s role in the tenant (admin, editor, viewer), or null when not a member (or only invited).';

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

-- Whether the current write comes from no user at all: service_role without a user, or
-- maintenance (a migration, the seed, a superuser session). Only such writes may set audit and
-- ownership columns themselves; every write by a user has them set by the triggers below. A
-- request role that does not bypass RLS is never privileged, even without a usable sub.
create function app.is_privileged() returns boolean
language plpgsql stable
set search_path = ''
as $$
declare
  acting text := pg_catalog.current_setting('role');
begin
  if auth.uid() is not null then
    return false;
  end if;
  if acting = 'none' then
    acting := session_user;
  end if;
  return coalesce((select r.rolsuper or r.rolbypassrls from pg_catalog.pg_roles r where r.rolname = acting), false);
end
$$;
comment on function app.is_privileged() is 'Whether the current write comes from no user (service_role without a sub, or maintenance as a superuser): only then do triggers keep audit and ownership columns as written.';

-- Whether `member` holds an accepted membership of `tenant`. For triggers (SECURITY DEFINER
-- ones): not granted to request roles, since it answers about any user.
create function app.is_accepted_member(tenant uuid, member uuid) returns boolean
language sql stable
set search_path = ''
as $$
  select exists (
    select from public.tenant_memberships m
    where m.tenant_id = tenant and m.user_id = member and m.accepted_at is not null
  )
$$;
comment on function app.is_accepted_member(uuid, uuid) is 'Whether the user holds an accepted membership of the tenant. For triggers only: answers about any user.';

revoke execute on function app.tenant_ids_with_role(text[]), app.member_tenant_ids(), app.editor_tenant_ids(),
  app.admin_tenant_ids(), app.member_role(uuid), app.is_member(uuid), app.can_edit(uuid), app.is_admin(uuid),
  app.is_privileged(), app.is_accepted_member(uuid, uuid)
  from public;
grant execute on function app.tenant_ids_with_role(text[]), app.member_tenant_ids(), app.editor_tenant_ids(),
  app.admin_tenant_ids(), app.member_role(uuid), app.is_member(uuid), app.can_edit(uuid), app.is_admin(uuid),
  app.is_privileged()
  to anon, authenticated, service_role;

-- Audit columns and keys, kept by the database on INSERT as on UPDATE: a user's write gets
-- created_at = now() whatever it said, and the columns that identify a row (its id, its tenant,
-- its user) never change. Privileged writes (app.is_privileged()) keep what they wrote, so the
-- seed and service_role can load history.

create function app.tenants_guard() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    if not app.is_privileged() then
      new.created_at := now();
    end if;
    return new;
  end if;
  if new.id is distinct from old.id then
    raise exception 'a tenant''s id cannot change'
      using errcode = 'insufficient_privilege', schema = tg_table_schema, table = tg_table_name, column = 'id';
  end if;
  if not app.is_privileged() then
    new.created_at := old.created_at;
  end if;
  return new;
end
$$;
create trigger tenants_guard before insert or update on public.tenants
  for each row execute function app.tenants_guard();

-- profiles and profile_private: id is the user (the policies check it), created_at is stamped,
-- profile_private.updated_at records the last change.
create function app.profiles_guard() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if app.is_privileged() then
    return new;
  end if;
  if tg_op = 'INSERT' then
    new.created_at := now();
  else
    new.created_at := old.created_at;
  end if;
  if tg_table_name = 'profile_private' then
    new.updated_at := case when tg_op = 'UPDATE' then now() end;
  end if;
  return new;
end
$$;
create trigger profiles_guard before insert or update on public.profiles
  for each row execute function app.profiles_guard();
create trigger profile_private_guard before insert or update on public.profile_private
  for each row execute function app.profiles_guard();

-- Memberships: an admin's insert is an invitation (accepted_at null). Only the invited user
-- accepts it (accepted_at becomes now(), once); only an admin changes the role; a membership
-- never changes tenant or user (that would hand an accepted membership to someone else).
create function app.tenant_memberships_guard() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if app.is_privileged() then
    if tg_op = 'UPDATE' and (new.tenant_id, new.user_id) is distinct from (old.tenant_id, old.user_id) then
      raise exception 'a membership cannot move to another tenant or user'
        using errcode = 'insufficient_privilege', schema = tg_table_schema, table = tg_table_name;
    end if;
    return new;
  end if;
  if tg_op = 'INSERT' then
    new.created_at := now();
    new.accepted_at := null;
    return new;
  end if;
  if (new.tenant_id, new.user_id) is distinct from (old.tenant_id, old.user_id) then
    raise exception 'a membership cannot move to another tenant or user'
      using errcode = 'insufficient_privilege', schema = tg_table_schema, table = tg_table_name;
  end if;
  new.created_at := old.created_at;
  if new.accepted_at is distinct from old.accepted_at then
    if old.accepted_at is not null or new.accepted_at is null or old.user_id is distinct from auth.uid() then
      raise exception 'only the invited user can accept an invitation'
        using errcode = 'insufficient_privilege', schema = tg_table_schema, table = tg_table_name, column = 'accepted_at';
    end if;
    new.accepted_at := now();
  end if;
  if new.role is distinct from old.role and not app.is_admin(old.tenant_id) then
    raise exception 'only an admin of the tenant can change a member''s role'
      using errcode = 'insufficient_privilege', schema = tg_table_schema, table = tg_table_name, column = 'role';
  end if;
  return new;
end
$$;
create trigger tenant_memberships_guard before insert or update on public.tenant_memberships
  for each row execute function app.tenant_memberships_guard();

-- Row Level Security. service_role bypasses it; anon has no grants on these tables.
alter table public.tenants enable row level security;
alter table public.profiles enable row level security;
alter table public.tenant_memberships enable row level security;
alter table public.profile_private enable row level security;

-- Tenants: members read their tenants, admins rename them; creation is for service_role.
create policy tenants_select_member on public.tenants
  for select to authenticated
  using (id = any ((select app.member_tenant_ids())::uuid[]));
create policy tenants_update_admin on public.tenants
  for update to authenticated
  using (app.is_admin(id))
  with check (app.is_admin(id));

-- Profiles: a user sees their own profile and those of the accepted members of their tenants
-- (not pending invitees: an invitation must not reveal who was invited), may create their own
-- profile (sign-up) and update it; nobody else's.
create policy profiles_select_self_or_colleague on public.profiles
  for select to authenticated
  using (
    id = (select auth.uid())
    or id in (
      select m.user_id from public.tenant_memberships m
      where m.tenant_id = any ((select app.member_tenant_ids())::uuid[]) and m.accepted_at is not null
    )
  );
create policy profiles_insert_self on public.profiles
  for insert to authenticated
  with check (id = (select auth.uid()));
create policy profiles_update_self on public.profiles
  for update to authenticated
  using (id = (select auth.uid()))
  with check (id = (select auth.uid()));

-- Private profile fields: the user only.
create policy profile_private_select_self on public.profile_private
  for select to authenticated
  using (id = (select auth.uid()));
create policy profile_private_insert_self on public.profile_private
  for insert to authenticated
  with check (id = (select auth.uid()));
create policy profile_private_update_self on public.profile_private
  for update to authenticated
  using (id = (select auth.uid()))
  with check (id = (select auth.uid()));

-- Memberships: members see who else is in (or invited to) their tenants, and a user sees their
-- own invitations; admins invite, change roles and remove; the invited user accepts (the
-- trigger above allows them nothing else), declines or leaves.
create policy tenant_memberships_select_member_or_invitee on public.tenant_memberships
  for select to authenticated
  using (tenant_id = any ((select app.member_tenant_ids())::uuid[]) or user_id = (select auth.uid()));
create policy tenant_memberships_insert_admin on public.tenant_memberships
  for insert to authenticated
  with check (app.is_admin(tenant_id));
create policy tenant_memberships_update_admin_or_invitee on public.tenant_memberships
  for update to authenticated
  using (app.is_admin(tenant_id) or user_id = (select auth.uid()))
  with check (app.is_admin(tenant_id) or user_id = (select auth.uid()));
create policy tenant_memberships_delete_admin_or_self on public.tenant_memberships
  for delete to authenticated
  using (app.is_admin(tenant_id) or user_id = (select auth.uid()));

grant select, insert, update, delete on public.tenants, public.profiles, public.profile_private,
  public.tenant_memberships to authenticated;
grant all on public.tenants, public.profiles, public.profile_private, public.tenant_memberships to service_role;
