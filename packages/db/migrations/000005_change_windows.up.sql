-- Sluice core: change windows, the order in which the events service delivers changes.
--
-- Ordering by (xid, id) below the snapshot's xmin would never skip a change, but xid order
-- is not commit order: a transaction that took its xid early can update a row after a later
-- xid updated it and committed, and its change would be delivered first. Change ids, taken in the
-- writer's own transaction, do respect every dependency: a change made after seeing another
-- transaction's commit gets a higher id than all of that transaction's changes (the identity
-- sequence is not cached). What ids lack is a point below which nothing can still commit.
--
-- A change window supplies that point. Window w holds the transactions visible in its boundary
-- snapshot and not in window w-1's; within a window changes go in id order. Windows are
-- appended one at a time under a transaction-level advisory lock, each boundary taken after
-- the previous window committed, so boundaries only grow and every committed transaction
-- falls in exactly one window. A position is (window, id): small, totally ordered, the same in
-- every instance, and a change is delivered as soon as its transaction commits, whatever older
-- transactions are still running.
--
-- Durability: the append commits synchronously whatever the server's synchronous_commit. A
-- transaction becomes visible only after its commit record is flushed, and that flush covers
-- everything logged before it (every change in the window, the id sequence): a window anyone
-- has read survives a crash with all its changes, and its number is never issued again. An
-- appender that has read a window the log no longer has (fsync off, a restore, a failover to a
-- lagging replica) raises data_corrupted instead; readers stop with SLUICE_CHANGE_LOG_REGRESSED.

create table sluice.change_window (
  seq bigint primary key,
  boundary pg_snapshot not null,
  -- The window's changes have ids in [first_id, last_id] (an empty window has first_id > last_id).
  first_id bigint not null,
  last_id bigint not null,
  created_at timestamptz not null default now()
);
-- Retention looks windows up by age.
create index change_window_created_at_idx on sluice.change_window (created_at);
comment on table sluice.change_window is 'Sluice: change windows; window seq holds the transactions visible in boundary but not in window seq-1''s boundary.';

-- Window 0 is the starting boundary: changes logged before it are never delivered.
insert into sluice.change_window (seq, boundary, first_id, last_id)
  values (0, pg_catalog.pg_current_snapshot(), 1, 0);

-- Retention deletes whole windows; the watermark is the newest window whose changes may be gone
-- (its boundary stays, it is the floor of the next window).
create table sluice.change_log_purged (
  singleton boolean primary key default true check (singleton),
  window_seq bigint,
  last_id bigint
);
comment on table sluice.change_log_purged is 'Sluice: the newest change window deleted by retention (positions before its end have expired).';
insert into sluice.change_log_purged (singleton) values (true);

-- Appends the next window when changes have committed since the last one (or always, with
-- `force`). Returns the new window's seq; null when there was nothing to append; -1 when another
-- session is appending right now (it will append these changes; force waits for it instead).
-- `known_seq` is the newest window the caller has read (see Durability above).
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
grant select, insert, delete on sluice.change_window to sluice_authenticator;
grant select, update on sluice.change_log_purged to sluice_authenticator;
