-- Reference application, part 3: documents owned by a user and shared with others for viewing
-- or editing.

create table public.documents (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  owner_id uuid not null default auth.uid() references public.profiles (id) on delete cascade,
  title text not null,
  content text,
  created_at timestamptz not null default now(),
  updated_at timestamptz
);
comment on table public.documents is 'Private documents: the owner has full access; others only through a share.';
create index documents_owner_idx on public.documents (owner_id);
create index documents_tenant_idx on public.documents (tenant_id);

create table public.document_shares (
  document_id uuid not null references public.documents (id) on delete cascade,
  user_id uuid not null references public.profiles (id) on delete cascade,
  permission text not null check (permission in ('view', 'edit')),
  created_at timestamptz not null default now(),
  primary key (document_id, user_id)
);
comment on table public.document_shares is 'A document shared with a user, to view or to edit (edit implies view).';
-- Policies ask "is this document shared with me": answered from the index alone.
create index document_shares_user_idx on public.document_shares (user_id, document_id, permission);

-- Like the tenancy helpers: PL/pgSQL (plans kept per session), and array forms that read
-- policies evaluate once per statement.
create function app.shared_document_ids(perm text) returns uuid[]
language plpgsql stable security definer
set search_path = ''
as $$
begin
  return (
    select coalesce(array_agg(s.document_id), '{}')
    from public.document_shares s
    where s.user_id = auth.uid() and (s.permission = perm or (perm = 'view' and s.permission = 'edit'))
  );
end
$$;
comment on function app.shared_document_ids(text) is 'Documents shared with the current user with the permission (edit implies view). Use as `id = any ((select app.shared_document_ids(''view''))::uuid[])`.';

create function app.owned_document_ids() returns uuid[]
language plpgsql stable security definer
set search_path = ''
as $$
begin
  return (select coalesce(array_agg(d.id), '{}') from public.documents d where d.owner_id = auth.uid());
end
$$;
comment on function app.owned_document_ids() is 'Documents the current user owns.';

create function app.has_share(doc uuid, perm text) returns boolean
language plpgsql stable security definer
set search_path = ''
as $$
begin
  return exists (
    select 1 from public.document_shares s
    where s.document_id = doc
      and s.user_id = auth.uid()
      and (s.permission = perm or (perm = 'view' and s.permission = 'edit'))
  );
end
$$;
comment on function app.has_share(uuid, text) is 'Whether the document is shared with the current user with the permission (edit implies view).';

create function app.owns_document(doc uuid) returns boolean
language plpgsql stable security definer
set search_path = ''
as $$
begin
  return exists (select 1 from public.documents d where d.id = doc and d.owner_id = auth.uid());
end
$$;
comment on function app.owns_document(uuid) is 'Whether the current user owns the document.';

revoke execute on function app.shared_document_ids(text), app.owned_document_ids(), app.has_share(uuid, text),
  app.owns_document(uuid) from public;
grant execute on function app.shared_document_ids(text), app.owned_document_ids(), app.has_share(uuid, text),
  app.owns_document(uuid) to anon, authenticated, service_role;

-- A document never moves to another tenant, and only its owner can give it away: without this,
-- a user with an edit share could make themselves the owner. Requests without a user (service
-- role, maintenance) may reassign it.
create function app.documents_audit() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.tenant_id is distinct from old.tenant_id then
    raise exception 'a document cannot move to another tenant'
      using errcode = 'check_violation', schema = tg_table_schema, table = tg_table_name, column = 'tenant_id';
  end if;
  if new.owner_id is distinct from old.owner_id
     and auth.uid() is not null and auth.uid() is distinct from old.owner_id then
    raise exception 'only the owner can transfer a document'
      using errcode = 'insufficient_privilege', schema = tg_table_schema, table = tg_table_name, column = 'owner_id';
  end if;
  new.created_at := old.created_at;
  new.updated_at := now();
  return new;
end
$$;
create trigger documents_audit before update on public.documents
  for each row execute function app.documents_audit();

alter table public.documents enable row level security;
alter table public.document_shares enable row level security;

create policy documents_select_owner_or_shared on public.documents
  for select to authenticated
  using (owner_id = (select auth.uid()) or id = any ((select app.shared_document_ids('view'))::uuid[]));
create policy documents_insert_owner_member on public.documents
  for insert to authenticated
  with check (owner_id = (select auth.uid()) and app.is_member(tenant_id));
create policy documents_update_owner_or_editor on public.documents
  for update to authenticated
  using (owner_id = (select auth.uid()) or app.has_share(id, 'edit'))
  with check (owner_id = (select auth.uid()) or app.has_share(id, 'edit'));
create policy documents_delete_owner on public.documents
  for delete to authenticated
  using (owner_id = (select auth.uid()));

create policy document_shares_select_owner_or_grantee on public.document_shares
  for select to authenticated
  using (user_id = (select auth.uid()) or document_id = any ((select app.owned_document_ids())::uuid[]));
create policy document_shares_insert_owner on public.document_shares
  for insert to authenticated
  with check (app.owns_document(document_id));
create policy document_shares_update_owner on public.document_shares
  for update to authenticated
  using (app.owns_document(document_id))
  with check (app.owns_document(document_id));
create policy document_shares_delete_owner on public.document_shares
  for delete to authenticated
  using (app.owns_document(document_id));

grant select, insert, update, delete on public.documents, public.document_shares to authenticated;
grant all on public.documents, public.document_shares to service_role;
