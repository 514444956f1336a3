drop function auth.tenant_id();
drop function auth.role();
drop function auth.uid();
drop function auth.jwt();
drop schema auth;
