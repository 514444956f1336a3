drop function sluice.visible_rows(text[], regclass, text[], regtype[], text[]);
