-- Back to 000006's append_change_window (asynchronous commits follow the server's setting).
drop function sluice.append_change_window(boolean, bigint);

create function sluice.append_change_window(force boolean default false) returns bigint
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  last_seq bigint;
  floor pg_snapshot;
  floor_xip xid8[];
  next_seq bigint;
begin
  -- In REPEATABLE READ or SERIALIZABLE the boundary would be the transaction's first snapshot,
  -- possibly older than the previous window's.
  if current_setting('transaction_isolation') <> 'read committed' then
    raise exception 'sluice.append_change_window must run in a READ COMMITTED transaction'
      using errcode = 'active_sql_transaction';
  end if;
  if force then
    perform pg_advisory_xact_lock(7355608020250002);
  elsif not pg_try_advisory_xact_lock(7355608020250002) then
    return -1;
  end if;
  select w.seq, w.boundary into last_seq, floor
    from sluice.change_window w order by w.seq desc limit 1;
  floor_xip := array(select pg_snapshot_xip(floor));
  -- Each statement of this (volatile) function takes a new snapshot, so this one's is taken
  -- after the lock, i.e. after the previous window committed; pg_current_snapshot() is the very
  -- snapshot the statement reads the log with. Not visible in the floor: xid >= its xmax, or
  -- running when it was taken.
  insert into sluice.change_window (seq, boundary, first_id, last_id)
  select last_seq + 1, pg_current_snapshot(), coalesce(min(c.id), 1), coalesce(max(c.id), 0)
    from sluice.change_log c
   where c.xid >= pg_snapshot_xmax(floor) or c.xid = any (floor_xip)
  having force or count(*) > 0
  returning seq into next_seq;
  return next_seq;
end
$$;
comment on function sluice.append_change_window(boolean) is 'Sluice: appends the next change window (see sluice.change_window); null when there was nothing to append, -1 when another session is appending.';

revoke execute on function sluice.append_change_window(boolean) from public;
grant execute on function sluice.append_change_window(boolean) to sluice_authenticator;
