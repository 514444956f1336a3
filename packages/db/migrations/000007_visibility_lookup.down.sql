drop function sluice.create_visibility_lookup(regclass);
drop function sluice.visible_rows(text[], regclass, text[], regtype[], text[]);
