-- Roles are cluster-wide and shared by every database of the cluster: they are kept.
-- Only what this database granted them is taken back.
revoke usage on schema public from anon, authenticated, service_role;
