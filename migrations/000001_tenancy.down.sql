-- profiles' select policy reads tenant_memberships, so it goes before that table.
drop policy profiles_select_self_or_colleague on public.profiles;
drop table public.tenant_memberships;
drop table public.profiles;
drop table public.tenants;
drop function app.is_admin(uuid);
drop function app.can_edit(uuid);
drop function app.is_member(uuid);
drop function app.member_role(uuid);
drop function app.admin_tenant_ids();
drop function app.editor_tenant_ids();
drop function app.member_tenant_ids();
drop function app.tenant_ids_with_role(text[]);
drop schema app;
