drop function public.my_tenants();
drop function public.fail_with(text);
drop function public.search_posts(text);
drop function public.tenant_post_count(uuid);
drop function public.create_post(uuid, text, text);
drop table public.posts;
drop function app.posts_audit();
drop table public.projects;
drop function app.projects_guard();
