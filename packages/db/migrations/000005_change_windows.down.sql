drop function sluice.append_change_window(boolean, bigint);
drop table sluice.change_log_purged;
drop table sluice.change_window;
