-- Reference application, part 4: one column of each supported type, for value round-trip tests
-- and examples of the wire encoding.

create type public.mood as enum ('happy', 'sad', 'ok');
comment on type public.mood is 'Example enum type.';

create table public.type_samples (
  id bigint generated always as identity primary key,
  tenant_id uuid,
  i2 int2,
  i4 int4,
  i8 int8,
  f4 float4,
  f8 float8,
  num numeric,
  flag bool,
  label text,
  vc varchar(50),
  uid uuid,
  ts timestamptz,
  ts_local timestamp,
  d date,
  t time,
  iv interval,
  js json,
  jsb jsonb,
  bin bytea,
  tags text[],
  ints int8[],
  mood public.mood
);
comment on table public.type_samples is 'One column per supported PostgreSQL type, for round-trip tests. Signed-in users and service_role only.';
comment on column public.type_samples.tenant_id is 'A free label tests tag their rows with, not a tenant reference: type_samples is not tenant data (every signed-in user reads and writes every row).';

alter table public.type_samples enable row level security;
create policy type_samples_all_authenticated on public.type_samples
  for all to authenticated
  using (true)
  with check (true);

grant select, insert, update, delete on public.type_samples to authenticated;
grant all on public.type_samples to service_role;
grant usage, select on sequence public.type_samples_id_seq to authenticated, service_role;
