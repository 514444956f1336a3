drop function sluice.visible_keys(text[], regclass, text, regtype, text[]);
revoke usage on schema sluice from anon, authenticated, service_role;
