-- Reference application, part 3: documents owned by a user and shared with other members of
-- their tenant for viewing or editing.
--
-- Who may see a document is decided by the document row alone (owner_id, viewer_ids): change
-- streams evaluate a table's SELECT policies on each logged version of a row, so a policy that
-- looked up document_shares would make a document's earlier drafts visible to whoever it is
-- shared with later. Users share through document_shares; a trigger there copies the grantees
-- into the document row (viewer_ids, editor_ids), so sharing writes a new version of the document
-- and earlier versions keep the grantees they had.

create table public.documents (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  owner_id uuid not null default auth.uid() references public.profiles (id) on delete cascade,
  title text not null,
  content text,
  viewer_ids uuid[] not null default '{}',
  editor_ids uuid[] not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz,
  -- The target of document_shares' composite foreign key: a share names the document's tenant and
  -- owner, and follows an ownership transfer (on update cascade).
  unique (tenant_id, id, owner_id)
);
comment on table public.documents is 'Private documents: the owner has full access; others only through a share. created_at and updated_at are kept by a trigger.';
comment on column public.documents.viewer_ids is 'Users the document is shared with (view or edit). Derived from document_shares by the database; not writable.';
comment on column public.documents.editor_ids is 'Users the document is shared with for editing. Derived from document_shares by the database; not writable.';
create index documents_owner_idx on public.documents (owner_id);
create index documents_tenant_idx on public.documents (tenant_id);

-- tenant_id and owner_id are copied from the document (a trigger fills them; the composite
-- foreign key keeps them equal, following an ownership transfer): the select policy then needs
-- only the share row itself. The grantee must be a member of the document's tenant: the foreign
-- key to tenant_memberships removes the share when the membership ends, and the trigger requires
-- the membership to be accepted.
create table public.document_shares (
  document_id uuid not null,
  tenant_id uuid not null,
  owner_id uuid not null,
  user_id uuid not null,
  permission text not null check (permission in ('view', 'edit')),
  created_at timestamptz not null default now(),
  primary key (document_id, user_id),
  foreign key (tenant_id, document_id, owner_id) references public.documents (tenant_id, id, owner_id)
    on delete cascade on update cascade,
  foreign key (tenant_id, user_id) references public.tenant_memberships (tenant_id, user_id) on delete cascade
);
comment on table public.document_shares is 'A document shared with a member of its tenant, to view or to edit (edit implies view). tenant_id and owner_id are the document''s, filled in by the database.';
create index document_shares_owner_idx on public.document_shares (owner_id);
create index document_shares_member_idx on public.document_shares (tenant_id, user_id);
create index document_shares_tenant_document_idx on public.document_shares (tenant_id, document_id, owner_id);

-- The grantees of a document, from document_shares. SECURITY DEFINER so it sees every share
-- whatever the writer may see; only the triggers below call it.
create function app.document_grantees(doc uuid, out viewers uuid[], out editors uuid[])
language sql stable
security definer
set search_path = ''
as $$
  select coalesce(array_agg(s.user_id order by s.user_id), '{}'),
    coalesce(array_agg(s.user_id order by s.user_id) filter (where s.permission = 'edit'), '{}')
  from public.document_shares s
  where s.document_id = doc
$$;
comment on function app.document_grantees(uuid) is 'Users a document is shared with (edit implies view) and those who may edit it, from document_shares. For triggers only.';
revoke execute on function app.document_grantees(uuid) from public;

-- Documents: viewer_ids and editor_ids are always what document_shares says, whoever writes the
-- row (even service_role): a client cannot grant itself access by writing them. A document never
-- moves to another tenant; only its owner gives it away, and only to an accepted member of its
-- tenant (without this, a user with an edit share could make themselves the owner, or the owner
-- could hand a tenant's document to a stranger). Requests without a user (service role,
-- maintenance) may reassign it, also only to a member.
create function app.documents_audit() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  privileged boolean := app.is_privileged();
begin
  if tg_op = 'INSERT' then
    new.viewer_ids := '{}';
    new.editor_ids := '{}';
    if not privileged then
      new.created_at := now();
      new.updated_at := null;
    elsif not app.is_accepted_member(new.tenant_id, new.owner_id) then
      raise exception 'the owner of a document must be a member of its tenant'
        using errcode = 'check_violation', schema = tg_table_schema, table = tg_table_name, column = 'owner_id';
    end if;
    return new;
  end if;
  if new.tenant_id is distinct from old.tenant_id then
    raise exception 'a document cannot move to another tenant'
      using errcode = 'check_violation', schema = tg_table_schema, table = tg_table_name, column = 'tenant_id';
  end if;
  if new.owner_id is distinct from old.owner_id then
    if not privileged and auth.uid() is distinct from old.owner_id then
      raise exception 'only the owner can transfer a document'
        using errcode = 'insufficient_privilege', schema = tg_table_schema, table = tg_table_name, column = 'owner_id';
    end if;
    if not app.is_accepted_member(new.tenant_id, new.owner_id) then
      raise exception 'the owner of a document must be a member of its tenant'
        using errcode = 'check_violation', schema = tg_table_schema, table = tg_table_name, column = 'owner_id';
    end if;
  end if;
  select g.viewers, g.editors into new.viewer_ids, new.editor_ids from app.document_grantees(new.id) g;
  new.created_at := old.created_at;
  -- A change of the grantees alone (a share written) is not an edit of the document.
  if (new.title, new.content, new.owner_id) is distinct from (old.title, old.content, old.owner_id) then
    new.updated_at := now();
  else
    new.updated_at := old.updated_at;
  end if;
  return new;
end
$$;
create trigger documents_audit before insert or update on public.documents
  for each row execute function app.documents_audit();

-- Shares, before the write: tenant_id and owner_id are the document's (when the document is not
-- found they stay null and the insert policy refuses the row, exactly as for a document of
-- someone else: no answer to "does this id exist"); created_at is stamped; a share never moves to
-- another document or user; the grantee holds an accepted membership of the document's tenant.
create function app.document_shares_guard() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  privileged boolean := app.is_privileged();
begin
  -- (A privileged change of a document's id reaches here through the foreign key's cascade.)
  if tg_op = 'UPDATE' and not privileged
     and (new.document_id, new.user_id) is distinct from (old.document_id, old.user_id) then
    raise exception 'a share cannot move to another document or user'
      using errcode = 'insufficient_privilege', schema = tg_table_schema, table = tg_table_name;
  end if;
  select d.tenant_id, d.owner_id into new.tenant_id, new.owner_id
  from public.documents d where d.id = new.document_id;
  if tg_op = 'INSERT' then
    if not privileged then
      new.created_at := now();
    end if;
  else
    new.created_at := old.created_at;
  end if;
  -- Checked only for the owner (or a privileged write): anyone else is refused by the policies,
  -- and must not learn from a different error whether the document or the membership exists.
  if (privileged or new.owner_id = auth.uid())
     and not app.is_accepted_member(new.tenant_id, new.user_id) then
    raise exception 'a document can only be shared with members of its tenant'
      using errcode = 'insufficient_privilege', schema = tg_table_schema, table = tg_table_name, column = 'user_id';
  end if;
  return new;
end
$$;
create trigger document_shares_guard before insert or update on public.document_shares
  for each row execute function app.document_shares_guard();

-- Shares, after the write: the document row gets its new grantees (app.documents_audit derives
-- them), i.e. a new version of the document. An update that only follows an ownership transfer
-- (the foreign key's cascade) changes no grantee and writes nothing.
create function app.document_shares_sync() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'UPDATE' and new.permission is not distinct from old.permission then
    return null;
  end if;
  update public.documents d set viewer_ids = d.viewer_ids
  where d.id = case when tg_op = 'DELETE' then old.document_id else new.document_id end;
  return null;
end
$$;
create trigger document_shares_sync after insert or update or delete on public.document_shares
  for each row execute function app.document_shares_sync();

alter table public.documents enable row level security;
alter table public.document_shares enable row level security;

-- Every policy reads the row and the claims only (see the top of this file).
create policy documents_select_owner_or_shared on public.documents
  for select to authenticated
  using (owner_id = (select auth.uid()) or (select auth.uid()) = any (viewer_ids));
create policy documents_insert_owner_member on public.documents
  for insert to authenticated
  with check (owner_id = (select auth.uid()) and app.is_member(tenant_id));
create policy documents_update_owner_or_editor on public.documents
  for update to authenticated
  using (owner_id = (select auth.uid()) or (select auth.uid()) = any (editor_ids))
  with check (owner_id = (select auth.uid()) or (select auth.uid()) = any (editor_ids));
create policy documents_delete_owner on public.documents
  for delete to authenticated
  using (owner_id = (select auth.uid()));

create policy document_shares_select_owner_or_grantee on public.document_shares
  for select to authenticated
  using (user_id = (select auth.uid()) or owner_id = (select auth.uid()));
create policy document_shares_insert_owner on public.document_shares
  for insert to authenticated
  with check (owner_id = (select auth.uid()));
create policy document_shares_update_owner on public.document_shares
  for update to authenticated
  using (owner_id = (select auth.uid()))
  with check (owner_id = (select auth.uid()));
create policy document_shares_delete_owner on public.document_shares
  for delete to authenticated
  using (owner_id = (select auth.uid()));

-- Column privileges: clients never choose a document id (a duplicate would reveal another
-- tenant's id) and never write the grantee arrays (the trigger would overwrite them anyway; the
-- privilege makes the attempt an error). The arrays are readable with the row: whoever may read
-- a document sees who else it is shared with (all of them members of its tenant).
grant select, delete on public.documents to authenticated;
grant insert (tenant_id, owner_id, title, content, created_at, updated_at),
  update (tenant_id, owner_id, title, content, created_at, updated_at)
  on public.documents to authenticated;
grant select, insert, update, delete on public.document_shares to authenticated;
grant all on public.documents, public.document_shares to service_role;
