-- Sluice core: change windows are durable whatever the server's synchronous_commit, and an
-- appender that has read a window the log no longer has refuses to issue that number again.
--
-- With synchronous_commit = off (the embedded default once had it) a window row is visible, and
-- read, before its commit record reaches disk. A crash then loses the row (and with it, possibly,
-- change ids and the changes of asynchronously committed writers); after recovery the same window
-- number is issued again for other changes, and a reader already past it skips them silently.
--
-- The append now commits synchronously: PostgreSQL makes a transaction visible only after its
-- commit record is flushed, and that flush covers everything logged before it - every change in
-- the window (a transaction visible in the boundary committed earlier) and the id sequence. So
-- a window anyone has read survives a crash with all its changes, and its number is never reused.
--
-- `known_seq` is the newest window the caller has read: when the log's newest window is older
-- (windows were lost anyway: fsync off, a restore, a failover to a lagging replica) the append
-- raises data_corrupted instead of issuing that number again; the reader reports it.

drop function sluice.append_change_window(boolean);

create function sluice.append_change_window(force boolean default false, known_seq bigint default null)
returns bigint
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
  -- Transaction-local, so it lasts until this transaction's commit (the function's own SET
  -- clause restores only search_path). 'on' waits for the local flush (and for synchronous
  -- standbys' flush); remote_apply, stronger, is kept.
  if current_setting('synchronous_commit') in ('off', 'local', 'remote_write') then
    perform set_config('synchronous_commit', 'on', true);
  end if;
  if known_seq is not null then
    select w.seq into last_seq from sluice.change_window w order by w.seq desc limit 1;
    if last_seq is null or last_seq < known_seq then
      raise exception 'sluice.change_window moved backwards: window % was read, the newest is %', known_seq, last_seq
        using errcode = 'data_corrupted',
              hint = 'Committed change windows were lost (a crash without durable commits, a restore or a failover); positions past the newest window are not valid.';
    end if;
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
comment on function sluice.append_change_window(boolean, bigint) is 'Sluice: appends the next change window (see sluice.change_window), committing synchronously; null when there was nothing to append, -1 when another session is appending; raises data_corrupted when known_seq is newer than the newest window.';

revoke execute on function sluice.append_change_window(boolean, bigint) from public;
grant execute on function sluice.append_change_window(boolean, bigint) to sluice_authenticator;
