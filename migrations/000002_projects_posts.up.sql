-- Reference application, part 2: projects and posts (audit columns, soft delete, full-text
-- search), and the SQL functions the data API's Call exposes.

-- Every row a tenant owns carries tenant_id, and every reference between such rows names the
-- tenant too: a foreign key (tenant_id, project_id) -> projects (tenant_id, id) cannot point into
-- another tenant, so such a reference fails the same way for another tenant's id as for a random
-- one, and another tenant's deletes never write into this tenant's rows.
--
-- Audit columns (created_by, updated_by) are plain user ids, not foreign keys: they record who
-- did it even after that user's profile is gone, and no foreign key action rewrites them.
create table public.projects (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  name text not null,
  created_by uuid default auth.uid(),
  created_at timestamptz not null default now(),
  -- The target of the composite foreign keys of rows that belong to a project.
  unique (tenant_id, id)
);
comment on table public.projects is 'Projects of a tenant; posts may belong to one. created_by and created_at are kept by a trigger.';
create index projects_tenant_idx on public.projects (tenant_id, created_at desc);

create table public.posts (
  id bigint generated always as identity primary key,
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  project_id uuid,
  author_id uuid not null default auth.uid() references public.profiles (id),
  title text not null,
  body text,
  status text not null default 'draft' check (status in ('draft', 'published', 'archived')),
  tags text[] not null default '{}',
  metadata jsonb not null default '{}',
  view_count bigint not null default 0,
  score numeric(40, 10),
  published_at timestamptz,
  search tsvector generated always as (
    to_tsvector('english', coalesce(title, '') || ' ' || coalesce(body, ''))
  ) stored,
  created_at timestamptz not null default now(),
  created_by uuid default auth.uid(),
  updated_at timestamptz,
  updated_by uuid,
  deleted_at timestamptz,
  -- Deleting the project clears project_id only: tenant_id is part of the key and stays.
  foreign key (tenant_id, project_id) references public.projects (tenant_id, id) on delete set null (project_id)
);
comment on table public.posts is 'Articles of a tenant. Soft-deleted by setting deleted_at; audit columns are kept by a trigger. Anonymous users read published posts.';
comment on column public.posts.search is 'Full-text search vector of title and body (english), generated.';
comment on column public.posts.deleted_at is 'Set when the post is soft-deleted; members no longer see it.';

create index posts_tenant_id_idx on public.posts (tenant_id, id);
create index posts_tenant_created_idx on public.posts (tenant_id, created_at desc);
create index posts_author_idx on public.posts (author_id);
create index posts_project_idx on public.posts (tenant_id, project_id);
create index posts_tags_idx on public.posts using gin (tags);
create index posts_search_idx on public.posts using gin (search);
-- What members and anonymous readers actually list: live posts, newest first.
create index posts_live_idx on public.posts (tenant_id, created_at desc) where deleted_at is null;
create index posts_published_idx on public.posts (published_at desc)
  where status = 'published' and deleted_at is null;

-- Audit columns, kept by the database so no client can forge them, on INSERT as on UPDATE:
-- created_* are the inserting user and time and never change, updated_* record the last writer,
-- a new post is never already deleted, a row never moves to another tenant, and publishing
-- stamps published_at. Privileged writes (service_role without a user, maintenance, the seed;
-- app.is_privileged()) keep the created_* they wrote, so history can be loaded.
create function app.projects_guard() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    if not app.is_privileged() then
      new.created_by := auth.uid();
      new.created_at := now();
    end if;
    return new;
  end if;
  if new.tenant_id is distinct from old.tenant_id then
    raise exception 'a project cannot move to another tenant'
      using errcode = 'check_violation', schema = tg_table_schema, table = tg_table_name, column = 'tenant_id';
  end if;
  new.created_by := old.created_by;
  new.created_at := old.created_at;
  return new;
end
$$;
create trigger projects_guard before insert or update on public.projects
  for each row execute function app.projects_guard();

-- The author is the inserting user (the insert policy checks it) and never changes afterwards,
-- except by a privileged write; whoever writes it, the author is an accepted member of the
-- post's tenant. SECURITY DEFINER to ask app.is_accepted_member about another user.
create function app.posts_audit() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  privileged boolean := app.is_privileged();
begin
  if tg_op = 'INSERT' then
    if not privileged then
      new.created_by := auth.uid();
      new.created_at := now();
      new.updated_by := null;
      new.updated_at := null;
      new.deleted_at := null;
    elsif not app.is_accepted_member(new.tenant_id, new.author_id) then
      raise exception 'the author of a post must be a member of its tenant'
        using errcode = 'check_violation', schema = tg_table_schema, table = tg_table_name, column = 'author_id';
    end if;
  else
    if new.tenant_id is distinct from old.tenant_id then
      raise exception 'a post cannot move to another tenant'
        using errcode = 'check_violation', schema = tg_table_schema, table = tg_table_name, column = 'tenant_id';
    end if;
    if new.author_id is distinct from old.author_id then
      if not privileged then
        raise exception 'the author of a post cannot change'
          using errcode = 'insufficient_privilege', schema = tg_table_schema, table = tg_table_name, column = 'author_id';
      elsif not app.is_accepted_member(new.tenant_id, new.author_id) then
        raise exception 'the author of a post must be a member of its tenant'
          using errcode = 'check_violation', schema = tg_table_schema, table = tg_table_name, column = 'author_id';
      end if;
    end if;
    new.created_at := old.created_at;
    new.created_by := old.created_by;
    new.updated_at := now();
    new.updated_by := auth.uid();
  end if;
  if new.status = 'published' and new.published_at is null then
    new.published_at := now();
  end if;
  return new;
end
$$;
create trigger posts_audit before insert or update on public.posts
  for each row execute function app.posts_audit();

alter table public.projects enable row level security;
alter table public.posts enable row level security;

-- Projects: members read; editors and admins create and change; admins delete.
create policy projects_select_member on public.projects
  for select to authenticated
  using (tenant_id = any ((select app.member_tenant_ids())::uuid[]));
create policy projects_insert_editor on public.projects
  for insert to authenticated
  with check (app.can_edit(tenant_id));
create policy projects_update_editor on public.projects
  for update to authenticated
  using (tenant_id = any ((select app.editor_tenant_ids())::uuid[]))
  with check (tenant_id = any ((select app.editor_tenant_ids())::uuid[]));
create policy projects_delete_admin on public.projects
  for delete to authenticated
  using (tenant_id = any ((select app.admin_tenant_ids())::uuid[]));

-- Posts: members read their tenants' live posts, whatever the status.
create policy posts_select_member on public.posts
  for select to authenticated
  using (deleted_at is null and tenant_id = any ((select app.member_tenant_ids())::uuid[]));
-- Soft-deleted posts stay visible to those who may change them (the author, editors, admins):
-- PostgreSQL checks an UPDATE's new row against the SELECT policies too, so without this a soft
-- delete (UPDATE ... SET deleted_at = now() WHERE id = ...) would be refused; it also lets them
-- restore a post.
create policy posts_select_trash on public.posts
  for select to authenticated
  using (
    deleted_at is not null
    and (
      (author_id = (select auth.uid()) and tenant_id = any ((select app.member_tenant_ids())::uuid[]))
      or tenant_id = any ((select app.editor_tenant_ids())::uuid[])
    )
  );
create policy posts_select_published on public.posts
  for select to anon
  using (status = 'published' and deleted_at is null);
create policy posts_insert_editor on public.posts
  for insert to authenticated
  with check (author_id = (select auth.uid()) and app.can_edit(tenant_id));
-- The author may edit their own posts while still a member; editors and admins any post of the
-- tenant. (The trigger above keeps tenant_id unchanged.)
create policy posts_update_author_or_editor on public.posts
  for update to authenticated
  using (
    (author_id = (select auth.uid()) and tenant_id = any ((select app.member_tenant_ids())::uuid[]))
    or tenant_id = any ((select app.editor_tenant_ids())::uuid[])
  )
  with check (
    (author_id = (select auth.uid()) and tenant_id = any ((select app.member_tenant_ids())::uuid[]))
    or tenant_id = any ((select app.editor_tenant_ids())::uuid[])
  );
-- Like updates, an author deletes their own posts only while still a member. (A DELETE without
-- a WHERE clause or RETURNING is checked against this policy alone, not the SELECT policies.)
create policy posts_delete_admin_or_author on public.posts
  for delete to authenticated
  using (
    tenant_id = any ((select app.admin_tenant_ids())::uuid[])
    or (author_id = (select auth.uid()) and tenant_id = any ((select app.member_tenant_ids())::uuid[]))
  );

-- Clients never choose ids: an insert (or an update of the key) with another tenant's id would
-- fail with a unique violation and so tell which ids exist. Column privileges leave id out;
-- audit columns stay writable because the triggers overwrite them.
grant select, delete on public.projects, public.posts to authenticated;
grant insert (tenant_id, name, created_by, created_at), update (tenant_id, name, created_by, created_at)
  on public.projects to authenticated;
grant insert (tenant_id, project_id, author_id, title, body, status, tags, metadata, view_count, score,
    published_at, created_at, created_by, updated_at, updated_by, deleted_at),
  update (tenant_id, project_id, author_id, title, body, status, tags, metadata, view_count, score,
    published_at, created_at, created_by, updated_at, updated_by, deleted_at)
  on public.posts to authenticated;
grant select on public.posts to anon;
grant all on public.projects, public.posts to service_role;
grant usage, select on sequence public.posts_id_seq to authenticated, service_role;

-- Functions for the data API's Call. SECURITY INVOKER (the default): they run under the caller's
-- role and claims, so Row Level Security applies inside them exactly as to direct queries.

create function public.create_post(p_tenant_id uuid, p_title text, p_body text default null)
returns public.posts
language sql
as $$
  insert into public.posts (tenant_id, title, body)
  values (p_tenant_id, p_title, p_body)
  returning *
$$;
comment on function public.create_post(uuid, text, text) is 'Creates a draft post in the tenant, authored by the caller.';

create function public.tenant_post_count(p_tenant_id uuid) returns bigint
language sql stable
as $$
  select count(*) from public.posts where tenant_id = p_tenant_id and deleted_at is null
$$;
comment on function public.tenant_post_count(uuid) is 'Number of live posts of the tenant the caller can see.';

create function public.search_posts(q text) returns setof public.posts
language sql stable
as $$
  select p.*
  from public.posts p
  where p.search @@ websearch_to_tsquery('english', q)
  order by ts_rank(p.search, websearch_to_tsquery('english', q)) desc, p.id
$$;
comment on function public.search_posts(text) is 'Posts the caller can see matching a web-search style query (english), best match first.';

create function public.fail_with(msg text) returns void
language plpgsql
as $$
begin
  raise exception '%', msg;
end
$$;
comment on function public.fail_with(text) is 'Always raises msg (SQLSTATE P0001); shows how function errors reach clients.';

create function public.my_tenants() returns setof public.tenants
language sql stable
as $$
  select t.*
  from public.tenants t
  where t.id = any ((select app.member_tenant_ids())::uuid[])
  order by t.name
$$;
comment on function public.my_tenants() is 'The tenants the caller belongs to, by name.';

revoke execute on function public.create_post(uuid, text, text), public.tenant_post_count(uuid),
  public.search_posts(text), public.fail_with(text), public.my_tenants() from public;
grant execute on function public.create_post(uuid, text, text), public.tenant_post_count(uuid),
  public.search_posts(text), public.fail_with(text), public.my_tenants() to authenticated, service_role;
grant execute on function public.tenant_post_count(uuid) to anon;
