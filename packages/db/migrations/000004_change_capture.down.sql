-- Cascade drops the capture triggers still installed on user tables.
drop function sluice.changes_enabled(regclass);
drop view sluice.captured_tables;
drop function sluice.disable_changes(regclass);
drop function sluice.enable_changes(regclass, boolean);
drop function sluice.notify_changes() cascade;
drop function sluice.capture_change() cascade;
drop function sluice.logged_row(anyelement, text[]);
drop table sluice.change_log;
revoke usage on schema sluice from sluice_authenticator;
