drop table public.document_shares;
drop table public.documents;
drop function app.documents_audit();
drop function app.owns_document(uuid);
drop function app.has_share(uuid, text);
drop function app.owned_document_ids();
drop function app.shared_document_ids(text);
