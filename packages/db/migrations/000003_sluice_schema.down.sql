drop event trigger if exists sluice_schema_dropped;
drop event trigger if exists sluice_schema_changed;
drop function sluice.notify_schema_changed();
drop schema sluice;
