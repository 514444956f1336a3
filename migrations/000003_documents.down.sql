drop table public.document_shares;
drop table public.documents;
drop function app.document_shares_sync();
drop function app.document_shares_guard();
drop function app.documents_audit();
drop function app.document_grantees(uuid);
