drop function sluice.create_visibility_lookup(regclass);
drop function sluice.visible_rows(text[], regclass, text[], regtype[], text[]);

-- visible_keys as 000005 created it.
create function sluice.visible_keys(
  claims text[],
  target regclass,
  key_column text,
  key_type regtype,
  keys text[]
) returns table (claim_index integer, key text)
language plpgsql
security invoker
as $$
declare
  lookup text := format(
    'select %1$I::text from %2$s where %1$I = any ($1::%3$s[])', key_column, target, key_type);
  i integer;
begin
  for i in 1 .. coalesce(array_length(claims, 1), 0) loop
    perform pg_catalog.set_config('request.jwt.claims', claims[i], true);
    return query execute format('select %s, k from (%s) s(k)', i, lookup) using keys;
  end loop;
end
$$;
comment on function sluice.visible_keys(text[], regclass, text, regtype, text[]) is
  'Sluice: for each claims document, the keys of `target` (single-column primary key) that the current role can SELECT under those claims.';

revoke all on function sluice.visible_keys(text[], regclass, text, regtype, text[]) from public;
grant execute on function sluice.visible_keys(text[], regclass, text, regtype, text[])
  to anon, authenticated, service_role;
