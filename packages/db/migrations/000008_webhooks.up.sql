-- Sluice core: the webhooks service's tables (docs/webhooks.md), in a schema of their own.
--
-- Two kinds of access:
--   * The admin API (gRPC WebhooksService) runs under the caller's role and claims, like the data
--     service: RLS below lets service_role (bypassrls) manage everything and a tenant's admin
--     (sluice_webhooks.manages) manage and read only its tenant's rows.
--   * The service's own workers (HTTP ingress, delivery, row-change fan-out, consumers' leases)
--     run as the login role sluice_authenticator without switching role, and get exactly the
--     privileges they use.
-- Secrets live in sluice_webhooks.secrets, which neither anon, authenticated nor service_role can
-- read: only the service's login role. The admin API writes them through
-- sluice_webhooks.set_secret, which checks the caller's right to the source or endpoint itself.

create schema sluice_webhooks;
comment on schema sluice_webhooks is 'Sluice webhooks: sources, inbox, consumers, endpoints, messages, deliveries, attempts. Not exposed through the data API.';
revoke all on schema sluice_webhooks from public;
grant usage on schema sluice_webhooks to authenticated, service_role, sluice_authenticator;

-- Who is a tenant's webhook admin. The default reads the JWT: claims tenant_id (the tenant) and
-- tenant_role = 'admin'. An application with its own membership tables replaces this function
-- (create or replace, same signature) in one of its migrations.
create function sluice_webhooks.manages(tenant uuid) returns boolean
language sql stable
as $$
  select tenant is not null
     and tenant = auth.tenant_id()
     and coalesce(auth.jwt() ->> 'tenant_role', '') = 'admin'
$$;
comment on function sluice_webhooks.manages(uuid) is 'True when the request''s claims make it an admin of this tenant (tenant_id and tenant_role = admin). Replace it to use application membership tables.';
grant execute on function sluice_webhooks.manages(uuid) to authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Inbound

create table sluice_webhooks.sources (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid,
  name text not null unique check (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
  kind text not null check (kind in ('standard-webhooks', 'stripe', 'github', 'hmac', 'supabase-database', 'operational')),
  description text not null default '' check (length(description) <= 1000),
  -- Kind options and limits (see proto Source): hmac {header, algorithm, encoding, prefix},
  -- supabase {auth, header}, dedupe {header | body_path}, tolerance_seconds, max_body_bytes,
  -- rate_per_second, keep_headers.
  settings jsonb not null default '{}',
  enabled boolean not null default true,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
comment on table sluice_webhooks.sources is 'Inbound webhook sources: POST /webhooks/{name} with a verification scheme (kind).';

-- Received, verified events. Stored before the sender gets its 2xx; (source_id, external_id)
-- is the dedupe key, held for the retention window (WEBHOOKS_INBOX_RETENTION_HOURS).
create table sluice_webhooks.inbox (
  id bigint generated always as identity primary key,
  source_id uuid not null references sluice_webhooks.sources on delete cascade,
  tenant_id uuid,
  external_id text not null,
  event_type text,
  received_at timestamptz not null default now(),
  headers jsonb not null default '{}',
  body bytea not null,
  -- supabase-database: the change as validated against the catalog {operation, schema, table}
  -- (record values are typed again from `body` when delivered).
  change jsonb,
  traceparent text,
  unique (source_id, external_id)
);
create index inbox_received_at_idx on sluice_webhooks.inbox (received_at);
comment on table sluice_webhooks.inbox is 'Verified inbound webhook events, once per (source, external id) within retention.';

-- A named, durable consumer of inbound events. Per event, a row in consumer_events holds its
-- lease (which stream has it until when) and its acknowledgement.
create table sluice_webhooks.consumers (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid,
  name text not null check (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'),
  -- Source names; empty: every source the consumer's tenant may see.
  sources text[] not null default '{}',
  -- Every inbox event with id <= floor_id is acknowledged or was received before the consumer
  -- existed: scans start after it. Advanced only over events older than a safety margin, so an
  -- insert still in flight with a lower id is never jumped over.
  floor_id bigint not null default 0,
  created_at timestamptz not null default now()
);
create unique index consumers_name_idx on sluice_webhooks.consumers
  (coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid), name);

create table sluice_webhooks.consumer_events (
  consumer_id uuid not null references sluice_webhooks.consumers on delete cascade,
  event_id bigint not null references sluice_webhooks.inbox on delete cascade,
  tenant_id uuid,
  lease_until timestamptz,
  acked_at timestamptz,
  deliveries integer not null default 0,
  primary key (consumer_id, event_id)
);
create index consumer_events_event_idx on sluice_webhooks.consumer_events (event_id);

-- ---------------------------------------------------------------------------------------------
-- Outbound

create table sluice_webhooks.endpoints (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid,
  url text not null check (length(url) <= 2048),
  description text not null default '' check (length(description) <= 1000),
  headers jsonb not null default '{}',
  -- [{schema, table, operations: ["INSERT", ...], filter: <sluice.type.v1.Filter as JSON>}]
  tables jsonb not null default '[]',
  event_types text[] not null default '{}',
  ordering text not null default 'none' check (ordering in ('none', 'key', 'tenant')),
  send_traceparent boolean not null default false,
  -- The identity row changes are checked against (RLS): role and claims.
  owner_role text not null,
  owner_claims jsonb not null default '{}',
  -- Row changes after this change-log position ("window:id") are delivered.
  start_position text not null default '0:0',
  enabled boolean not null default true,
  disabled_reason text,
  failing_since timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  -- A bypassrls owner would receive every tenant's rows: only service_role itself may own so.
  check (owner_role in ('anon', 'authenticated', 'service_role'))
);
comment on table sluice_webhooks.endpoints is 'Outbound webhook endpoints: URL, what they receive, and the owner whose RLS filters row changes.';

-- One secret per row; several per source or endpoint during rotation (expires_at set on the old).
create table sluice_webhooks.secrets (
  id bigint generated always as identity primary key,
  source_id uuid references sluice_webhooks.sources on delete cascade,
  endpoint_id uuid references sluice_webhooks.endpoints on delete cascade,
  secret text not null,
  created_at timestamptz not null default now(),
  expires_at timestamptz,
  check (num_nonnulls(source_id, endpoint_id) = 1)
);
create index secrets_source_idx on sluice_webhooks.secrets (source_id) where source_id is not null;
create index secrets_endpoint_idx on sluice_webhooks.secrets (endpoint_id) where endpoint_id is not null;
comment on table sluice_webhooks.secrets is 'Verification and signing secrets; readable only by the service login role.';

create table sluice_webhooks.messages (
  -- The webhook-id of every attempt is 'msg_' || replace(id::text, '-', '').
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid,
  event_type text not null check (event_type ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,254}$'),
  -- The `data` of the body ({"type", "timestamp", "data"}).
  payload jsonb not null,
  -- The payload's size as text: a delivery claim reads bodies up to a budget of bytes, and
  -- jsonb has no cheap size (pg_column_size is the compressed one).
  payload_bytes integer generated always as (octet_length(payload::text)) stored,
  idempotency_key text check (length(idempotency_key) <= 255),
  ordering_key text,
  -- Row-change messages are per endpoint (the payload is what its owner may see) and carry the
  -- change's position; published ones have neither.
  endpoint_id uuid references sluice_webhooks.endpoints on delete cascade,
  change_position text,
  traceparent text,
  created_at timestamptz not null default now()
);
create unique index messages_idempotency_idx on sluice_webhooks.messages
  (coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid), idempotency_key)
  where idempotency_key is not null;
create unique index messages_change_idx on sluice_webhooks.messages (endpoint_id, change_position)
  where change_position is not null;
create index messages_created_at_idx on sluice_webhooks.messages (created_at);

create table sluice_webhooks.deliveries (
  id bigint generated always as identity primary key,
  message_id uuid not null references sluice_webhooks.messages on delete cascade,
  endpoint_id uuid not null references sluice_webhooks.endpoints on delete cascade,
  tenant_id uuid,
  status text not null default 'pending' check (status in ('pending', 'succeeded', 'failed')),
  -- Attempts started. While one is in flight next_attempt_at is its lease's end: a worker that
  -- dies leaves the delivery due again then (same message, same webhook-id).
  attempts integer not null default 0,
  next_attempt_at timestamptz not null default now(),
  lease_token uuid,
  -- Deliveries with the same non-null key for one endpoint go in id order (ordering key/tenant).
  fifo_key text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (message_id, endpoint_id)
);
create index deliveries_due_idx on sluice_webhooks.deliveries (next_attempt_at) where status = 'pending';
create index deliveries_fifo_idx on sluice_webhooks.deliveries (endpoint_id, fifo_key, id)
  where status = 'pending' and fifo_key is not null;
create index deliveries_endpoint_idx on sluice_webhooks.deliveries (endpoint_id, status, updated_at);

create table sluice_webhooks.attempts (
  id bigint generated always as identity primary key,
  delivery_id bigint not null references sluice_webhooks.deliveries on delete cascade,
  message_id uuid not null,
  endpoint_id uuid not null,
  tenant_id uuid,
  attempt integer not null,
  started_at timestamptz not null,
  duration_ms integer not null,
  status_code integer,
  outcome text not null check (outcome in ('succeeded', 'http_error', 'timeout', 'network_error', 'blocked')),
  error text,
  -- The first 20 KB of the response.
  response_body text
);
create index attempts_delivery_idx on sluice_webhooks.attempts (delivery_id);
create index attempts_message_idx on sluice_webhooks.attempts (message_id);
create index attempts_endpoint_idx on sluice_webhooks.attempts (endpoint_id, started_at);

-- Where the row-change fan-out has got to in the change log ("window:id"); one row.
create table sluice_webhooks.fanout (
  singleton boolean primary key default true check (singleton),
  position text not null,
  updated_at timestamptz not null default now()
);

-- Where a new endpoint's row changes start, called in the transaction that creates it: the
-- fan-out's position, locked FOR SHARE until that transaction ends. The fan-out (which takes the
-- row FOR UPDATE SKIP LOCKED) cannot move past changes the endpoint should receive before the
-- endpoint is committed and visible to it; a position taken outside the transaction could be
-- passed in between and those changes missed. Null before the fan-out first ran.
create function sluice_webhooks.endpoint_start_position() returns text
language sql volatile security definer set search_path = pg_catalog, pg_temp
as $$ select f.position from sluice_webhooks.fanout f where f.singleton for share $$;
comment on function sluice_webhooks.endpoint_start_position() is 'The start_position of an endpoint created in this transaction: the row-change fan-out''s position, held until commit.';
revoke all on function sluice_webhooks.endpoint_start_position() from public;
grant execute on function sluice_webhooks.endpoint_start_position() to authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Published messages reach their tenant's subscribed endpoints in the same transaction.

create function sluice_webhooks.queue_published() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp
as $$
begin
  if new.endpoint_id is not null then
    return null; -- a row-change message: the fan-out queues its one delivery itself
  end if;
  insert into sluice_webhooks.deliveries (message_id, endpoint_id, tenant_id, fifo_key)
  select new.id, e.id, e.tenant_id,
         case e.ordering when 'key' then new.ordering_key when 'tenant' then new.tenant_id::text end
    from sluice_webhooks.endpoints e
   where e.enabled
     and e.tenant_id is not distinct from new.tenant_id
     and (new.event_type = any (e.event_types) or '*' = any (e.event_types));
  return null;
end
$$;
create trigger messages_queue_published after insert on sluice_webhooks.messages
  for each row execute function sluice_webhooks.queue_published();

-- Delivery workers LISTEN on sluice_webhooks: a delivery that becomes due now (queued, or made
-- due again by a replay or recovery) wakes them at once (one notification per transaction;
-- PostgreSQL folds identical ones). Only then: a worker's claim moves next_attempt_at to its
-- lease's end and a failed attempt moves it to the retry, and waking every worker for those would
-- make each claim wake the other workers' claims, endlessly; their poll finds retries when due.
create function sluice_webhooks.notify_due() returns trigger
language plpgsql
as $$
begin
  if exists (select 1 from new_rows where status = 'pending' and next_attempt_at <= now()) then
    perform pg_catalog.pg_notify('sluice_webhooks', '');
  end if;
  return null;
end
$$;
create trigger deliveries_notify after insert on sluice_webhooks.deliveries
  referencing new table as new_rows for each statement execute function sluice_webhooks.notify_due();
create trigger deliveries_notify_update after update on sluice_webhooks.deliveries
  referencing new table as new_rows for each statement execute function sluice_webhooks.notify_due();

-- Consumers of inbound events LISTEN on sluice_webhooks_inbox: a stored event wakes them at once.
create function sluice_webhooks.notify_inbox() returns trigger
language plpgsql
as $$
begin
  perform pg_catalog.pg_notify('sluice_webhooks_inbox', '');
  return null;
end
$$;
create trigger inbox_notify after insert on sluice_webhooks.inbox
  for each statement execute function sluice_webhooks.notify_inbox();

-- SendTestMessage: a 'sluice.test' message for one endpoint and its one delivery. The message
-- names its endpoint, so the publish trigger leaves it alone; callers may not insert
-- deliveries, hence this function, which checks the caller's right to the endpoint itself.
create function sluice_webhooks.queue_test_message(p_endpoint uuid) returns uuid
language plpgsql security definer set search_path = pg_catalog, pg_temp
as $$
declare
  tenant uuid;
  message uuid;
begin
  select e.tenant_id into tenant from sluice_webhooks.endpoints e where e.id = p_endpoint;
  if not found or not (auth.role() = 'service_role' or sluice_webhooks.manages(tenant)) then
    raise exception 'no such endpoint' using errcode = '42501';
  end if;
  insert into sluice_webhooks.messages (tenant_id, event_type, payload, endpoint_id)
  values (tenant, 'sluice.test',
          jsonb_build_object('message', 'A test message from Sluice', 'endpoint_id', p_endpoint),
          p_endpoint)
  returning id into message;
  insert into sluice_webhooks.deliveries (message_id, endpoint_id, tenant_id) values (message, p_endpoint, tenant);
  return message;
end
$$;
revoke all on function sluice_webhooks.queue_test_message(uuid) from public;
grant execute on function sluice_webhooks.queue_test_message(uuid) to authenticated, service_role;

-- Secrets: written through this function only (the callers cannot read or write the table).
-- The caller must manage the source's or endpoint's tenant (service_role manages all).
-- Older secrets of the same owner that do not expire yet stay valid for `grace`.
create function sluice_webhooks.set_secret(p_source uuid, p_endpoint uuid, p_secret text, p_grace interval)
returns timestamptz
language plpgsql security definer set search_path = pg_catalog, pg_temp
as $$
declare
  tenant uuid;
  until timestamptz := now() + p_grace;
begin
  if num_nonnulls(p_source, p_endpoint) <> 1 then
    raise exception 'set_secret: exactly one of source and endpoint' using errcode = '22023';
  end if;
  if p_source is not null then
    select s.tenant_id into tenant from sluice_webhooks.sources s where s.id = p_source;
  else
    select e.tenant_id into tenant from sluice_webhooks.endpoints e where e.id = p_endpoint;
  end if;
  if not found or not (auth.role() = 'service_role' or sluice_webhooks.manages(tenant)) then
    raise exception 'no such source or endpoint' using errcode = '42501';
  end if;
  update sluice_webhooks.secrets
     set expires_at = least(coalesce(expires_at, until), until)
   where (source_id = p_source or endpoint_id = p_endpoint);
  insert into sluice_webhooks.secrets (source_id, endpoint_id, secret) values (p_source, p_endpoint, p_secret);
  return until;
end
$$;
revoke all on function sluice_webhooks.set_secret(uuid, uuid, text, interval) from public;
grant execute on function sluice_webhooks.set_secret(uuid, uuid, text, interval) to authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Row Level Security for the admin API (service_role bypasses it).

alter table sluice_webhooks.sources enable row level security;
alter table sluice_webhooks.inbox enable row level security;
alter table sluice_webhooks.consumers enable row level security;
alter table sluice_webhooks.consumer_events enable row level security;
alter table sluice_webhooks.endpoints enable row level security;
alter table sluice_webhooks.secrets enable row level security;
alter table sluice_webhooks.messages enable row level security;
alter table sluice_webhooks.deliveries enable row level security;
alter table sluice_webhooks.attempts enable row level security;
alter table sluice_webhooks.fanout enable row level security;

create policy tenant_admin on sluice_webhooks.sources for all to authenticated
  using (sluice_webhooks.manages(tenant_id)) with check (sluice_webhooks.manages(tenant_id) and kind <> 'operational');
-- The operational source is service-level, but its events are stored in the endpoint's tenant:
-- a tenant's admin sees the source too (its name and kind reach consumers; no secret is in it).
create policy tenant_admin_operational on sluice_webhooks.sources for select to authenticated
  using (kind = 'operational' and sluice_webhooks.manages(auth.tenant_id()));
create policy tenant_admin on sluice_webhooks.inbox for select to authenticated
  using (sluice_webhooks.manages(tenant_id));
create policy tenant_admin on sluice_webhooks.consumers for all to authenticated
  using (sluice_webhooks.manages(tenant_id)) with check (sluice_webhooks.manages(tenant_id));
create policy tenant_admin on sluice_webhooks.consumer_events for all to authenticated
  using (sluice_webhooks.manages(tenant_id)) with check (sluice_webhooks.manages(tenant_id));
-- A tenant's endpoint is owned by one of its users: never by service_role, never another tenant.
create policy tenant_admin on sluice_webhooks.endpoints for all to authenticated
  using (sluice_webhooks.manages(tenant_id))
  with check (
    sluice_webhooks.manages(tenant_id)
    and owner_role = 'authenticated'
    and owner_claims ->> 'tenant_id' = tenant_id::text
  );
create policy tenant_admin on sluice_webhooks.messages for select to authenticated
  using (sluice_webhooks.manages(tenant_id));
create policy tenant_publish on sluice_webhooks.messages for insert to authenticated
  with check (sluice_webhooks.manages(tenant_id) and endpoint_id is null and change_position is null);
create policy tenant_admin on sluice_webhooks.deliveries for select to authenticated
  using (sluice_webhooks.manages(tenant_id));
create policy tenant_replay on sluice_webhooks.deliveries for update to authenticated
  using (sluice_webhooks.manages(tenant_id)) with check (sluice_webhooks.manages(tenant_id));
create policy tenant_admin on sluice_webhooks.attempts for select to authenticated
  using (sluice_webhooks.manages(tenant_id));
-- The service's login role is not bypassrls: the workers see every row.
create policy service_worker on sluice_webhooks.sources for all to sluice_authenticator using (true) with check (true);
create policy service_worker on sluice_webhooks.inbox for all to sluice_authenticator using (true) with check (true);
create policy service_worker on sluice_webhooks.consumers for all to sluice_authenticator using (true) with check (true);
create policy service_worker on sluice_webhooks.consumer_events for all to sluice_authenticator using (true) with check (true);
create policy service_worker on sluice_webhooks.endpoints for all to sluice_authenticator using (true) with check (true);
create policy service_worker on sluice_webhooks.secrets for all to sluice_authenticator using (true) with check (true);
create policy service_worker on sluice_webhooks.messages for all to sluice_authenticator using (true) with check (true);
create policy service_worker on sluice_webhooks.deliveries for all to sluice_authenticator using (true) with check (true);
create policy service_worker on sluice_webhooks.attempts for all to sluice_authenticator using (true) with check (true);
create policy service_worker on sluice_webhooks.fanout for all to sluice_authenticator using (true) with check (true);

grant select, insert, update, delete on sluice_webhooks.sources, sluice_webhooks.endpoints,
  sluice_webhooks.consumers, sluice_webhooks.consumer_events to authenticated, service_role;
grant select on sluice_webhooks.inbox, sluice_webhooks.attempts to authenticated, service_role;
grant select, insert on sluice_webhooks.messages to authenticated, service_role;
grant select, update (status, next_attempt_at, updated_at) on sluice_webhooks.deliveries to authenticated, service_role;
grant select, insert, update, delete on all tables in schema sluice_webhooks to sluice_authenticator;

-- Sluice's own operational events (endpoint failing, disabled, recovered) are inbound events of
-- this source, so consumers receive them like any other.
insert into sluice_webhooks.sources (name, kind, description)
values ('sluice-operational', 'operational', 'Sluice''s operational events: endpoint failing, exhausted, disabled, recovered.');
