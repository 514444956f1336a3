-- Reference application, part 5: capture the changes of every table for the events service.

select sluice.enable_changes(t)
  from unnest(array[
    'public.tenants', 'public.tenant_memberships', 'public.profiles', 'public.profile_private', 'public.projects',
    'public.posts', 'public.documents', 'public.document_shares', 'public.type_samples'
  ]::regclass[]) as t;
