-- Demo data for the reference application (migrations/). Loaded once by the launcher, as the
-- superuser, inside a transaction; safe to run again (every insert skips existing rows).
--
-- Fixed ids, used by the README examples and the tests:
--
--   tenants   Acme    11111111-1111-1111-1111-111111111111  (slug acme)
--             Globex  22222222-2222-2222-2222-222222222222  (slug globex)
--
--   users     alice   aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa  admin of Acme
--             bob     bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb  admin of Globex
--             carol   cccccccc-cccc-cccc-cccc-cccccccccccc  viewer in Acme
--             dave    dddddddd-dddd-dddd-dddd-dddddddddddd  editor in Acme
--             (every membership accepted; emails in profile_private, readable by their owner only)
--
--   projects  a0000000-0000-0000-0000-000000000001  Acme "Website"
--             b0000000-0000-0000-0000-000000000001  Globex "Launch"
--
--   posts     ids 1-10 in Acme (authors alice and dave), 11-20 in Globex (author bob).
--             Published and live (what anon sees): 1, 2, 5, 9 (Acme) and 11, 12, 15, 19 (Globex).
--             Soft-deleted: 7, 8 (Acme) and 17, 18 (Globex). Members see 8 live posts per tenant.
--             Post 1 has view_count 9007199254740993 (2^53 + 1: not representable as a JS number).
--
--   documents d0000000-0000-0000-0000-000000000001  "Acme roadmap", owner alice, shared with
--                                                    carol (view) and dave (edit)
--             d0000000-0000-0000-0000-000000000002  "Alice's notes", owner alice, not shared
--             d0000000-0000-0000-0000-000000000003  "Globex budget", owner bob, not shared
--             (the shares' tenant_id and owner_id, and the documents' viewer_ids and editor_ids,
--             are filled in by the triggers)
--
--   type_samples ids 1 (every column set) and 2 (every column null), tenant Acme.

insert into public.tenants (id, name, slug, created_at) values
  ('11111111-1111-1111-1111-111111111111', 'Acme', 'acme', '2024-01-01T09:00:00Z'),
  ('22222222-2222-2222-2222-222222222222', 'Globex', 'globex', '2024-01-01T09:00:00Z')
on conflict do nothing;

insert into public.profiles (id, display_name, created_at) values
  ('aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'Alice', '2024-01-01T09:00:00Z'),
  ('bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb', 'Bob', '2024-01-01T09:00:00Z'),
  ('cccccccc-cccc-cccc-cccc-cccccccccccc', 'Carol', '2024-01-01T09:00:00Z'),
  ('dddddddd-dddd-dddd-dddd-dddddddddddd', 'Dave', '2024-01-01T09:00:00Z')
on conflict do nothing;

insert into public.profile_private (id, email, created_at) values
  ('aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'alice@acme.example', '2024-01-01T09:00:00Z'),
  ('bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb', 'bob@globex.example', '2024-01-01T09:00:00Z'),
  ('cccccccc-cccc-cccc-cccc-cccccccccccc', 'carol@acme.example', '2024-01-01T09:00:00Z'),
  ('dddddddd-dddd-dddd-dddd-dddddddddddd', 'dave@acme.example', '2024-01-01T09:00:00Z')
on conflict do nothing;

insert into public.tenant_memberships (tenant_id, user_id, role, created_at, accepted_at) values
  ('11111111-1111-1111-1111-111111111111', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', 'admin', '2024-01-01T09:00:00Z', '2024-01-01T09:00:00Z'),
  ('22222222-2222-2222-2222-222222222222', 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb', 'admin', '2024-01-01T09:00:00Z', '2024-01-01T09:00:00Z'),
  ('11111111-1111-1111-1111-111111111111', 'cccccccc-cccc-cccc-cccc-cccccccccccc', 'viewer', '2024-01-01T09:00:00Z', '2024-01-01T10:00:00Z'),
  ('11111111-1111-1111-1111-111111111111', 'dddddddd-dddd-dddd-dddd-dddddddddddd', 'editor', '2024-01-01T09:00:00Z', '2024-01-01T10:00:00Z')
on conflict do nothing;

insert into public.projects (id, tenant_id, name, created_by, created_at) values
  ('a0000000-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111', 'Website',
   'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', '2024-01-02T09:00:00Z'),
  ('b0000000-0000-0000-0000-000000000001', '22222222-2222-2222-2222-222222222222', 'Launch',
   'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb', '2024-01-02T09:00:00Z')
on conflict do nothing;

-- Explicit ids (hence OVERRIDING SYSTEM VALUE) so the seed is idempotent and examples can name
-- posts; the identity sequence is moved past them below.
insert into public.posts (
  id, tenant_id, project_id, author_id, title, body, status, tags, metadata, view_count, score,
  published_at, created_at, created_by, deleted_at
) overriding system value values
  (1, '11111111-1111-1111-1111-111111111111', 'a0000000-0000-0000-0000-000000000001', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa',
   'Welcome to Acme', 'Acme builds rockets, anvils and portable holes.', 'published', '{news,welcome}',
   '{"featured": true}', 9007199254740993, 4.5000000001, '2024-02-01T10:00:00Z', '2024-02-01T09:00:00Z',
   'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', null),
  (2, '11111111-1111-1111-1111-111111111111', 'a0000000-0000-0000-0000-000000000001', 'dddddddd-dddd-dddd-dddd-dddddddddddd',
   'Rocket skates review', 'Fast, loud, and hard to steer. Four anvils out of five.', 'published', '{review,rockets}',
   '{"rating": 4}', 1200, 3.75, '2024-02-03T10:00:00Z', '2024-02-03T09:00:00Z',
   'dddddddd-dddd-dddd-dddd-dddddddddddd', null),
  (3, '11111111-1111-1111-1111-111111111111', null, 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa',
   'Quarterly plan (draft)', 'Ship the giant magnet before the desert season.', 'draft', '{planning}',
   '{}', 0, null, null, '2024-02-05T09:00:00Z', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', null),
  (4, '11111111-1111-1111-1111-111111111111', 'a0000000-0000-0000-0000-000000000001', 'dddddddd-dddd-dddd-dddd-dddddddddddd',
   'Anvil safety guide', 'Never stand under a falling anvil.', 'draft', '{safety,anvils}',
   '{"reviewers": ["alice"]}', 0, null, null, '2024-02-07T09:00:00Z', 'dddddddd-dddd-dddd-dddd-dddddddddddd', null),
  (5, '11111111-1111-1111-1111-111111111111', null, 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa',
   'Portable holes now in stock', 'Our best seller is back: portable holes in three sizes.', 'published', '{news,products}',
   '{}', 530, 2.1, '2024-02-09T10:00:00Z', '2024-02-09T09:00:00Z', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', null),
  (6, '11111111-1111-1111-1111-111111111111', null, 'dddddddd-dddd-dddd-dddd-dddddddddddd',
   'Winter catalogue 2023', 'Last year''s catalogue, kept for reference.', 'archived', '{catalogue}',
   '{}', 77, null, '2023-11-01T10:00:00Z', '2023-11-01T09:00:00Z', 'dddddddd-dddd-dddd-dddd-dddddddddddd', null),
  (7, '11111111-1111-1111-1111-111111111111', null, 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa',
   'Recall notice: earthquake pills', 'Withdrawn: the pills do not work on roadrunners.', 'published', '{recall}',
   '{}', 40, null, '2024-02-11T10:00:00Z', '2024-02-11T09:00:00Z', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa',
   '2024-02-12T09:00:00Z'),
  (8, '11111111-1111-1111-1111-111111111111', null, 'dddddddd-dddd-dddd-dddd-dddddddddddd',
   'Abandoned idea: dehydrated boulders', 'Just add water.', 'draft', '{ideas}',
   '{}', 0, null, null, '2024-02-13T09:00:00Z', 'dddddddd-dddd-dddd-dddd-dddddddddddd', '2024-02-14T09:00:00Z'),
  (9, '11111111-1111-1111-1111-111111111111', 'a0000000-0000-0000-0000-000000000001', 'dddddddd-dddd-dddd-dddd-dddddddddddd',
   'Giant magnet launch', 'The giant magnet attracts everything, including trouble.', 'published', '{news,magnets}',
   '{"launch": {"date": "2024-03-01", "regions": ["desert"]}}', 310, 9.99, '2024-02-15T10:00:00Z',
   '2024-02-15T09:00:00Z', 'dddddddd-dddd-dddd-dddd-dddddddddddd', null),
  (10, '11111111-1111-1111-1111-111111111111', null, 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa',
   'Team offsite notes', 'Cliff-side venue booked. Bring umbrellas.', 'draft', '{internal}',
   '{}', 0, null, null, '2024-02-17T09:00:00Z', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', null),
  (11, '22222222-2222-2222-2222-222222222222', 'b0000000-0000-0000-0000-000000000001', 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb',
   'Globex opens new campus', 'Cypress Creek welcomes our newest employees.', 'published', '{news,campus}',
   '{"featured": true}', 2048, 7.25, '2024-02-02T10:00:00Z', '2024-02-02T09:00:00Z',
   'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb', null),
  (12, '22222222-2222-2222-2222-222222222222', 'b0000000-0000-0000-0000-000000000001', 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb',
   'Hammock district tour', 'A walk through the campus hammock district.', 'published', '{campus,culture}',
   '{}', 640, 1.5, '2024-02-04T10:00:00Z', '2024-02-04T09:00:00Z', 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb', null),
  (13, '22222222-2222-2222-2222-222222222222', null, 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb',
   'Board meeting agenda (draft)', 'Item one: world domination, phase two.', 'draft', '{internal,board}',
   '{}', 0, null, null, '2024-02-06T09:00:00Z', 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb', null),
  (14, '22222222-2222-2222-2222-222222222222', null, 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb',
   'Recruiting: nuclear engineers', 'Sector 7G is hiring. Safety training provided.', 'draft', '{jobs}',
   '{}', 0, null, null, '2024-02-08T09:00:00Z', 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb', null),
  (15, '22222222-2222-2222-2222-222222222222', 'b0000000-0000-0000-0000-000000000001', 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb',
   'Product launch: doomsday device', 'Now available for evaluation by selected partners.', 'published', '{news,products}',
   '{"embargo": false}', 999, 6.66, '2024-02-10T10:00:00Z', '2024-02-10T09:00:00Z',
   'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb', null),
  (16, '22222222-2222-2222-2222-222222222222', null, 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb',
   'Annual report 2023', 'Profits up, morale steady, volcano lair on schedule.', 'archived', '{reports}',
   '{}', 120, null, '2023-12-01T10:00:00Z', '2023-12-01T09:00:00Z', 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb', null),
  (17, '22222222-2222-2222-2222-222222222222', null, 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb',
   'Retracted: press release', 'This press release was issued in error.', 'published', '{press}',
   '{}', 15, null, '2024-02-12T10:00:00Z', '2024-02-12T09:00:00Z', 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb',
   '2024-02-13T09:00:00Z'),
  (18, '22222222-2222-2222-2222-222222222222', null, 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb',
   'Old draft: cafeteria menu', 'Fish sticks on Fridays.', 'draft', '{internal}',
   '{}', 0, null, null, '2024-02-14T09:00:00Z', 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb', '2024-02-15T09:00:00Z'),
  (19, '22222222-2222-2222-2222-222222222222', 'b0000000-0000-0000-0000-000000000001', 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb',
   'Customer story: Springfield', 'How a small town powered up with Globex.', 'published', '{customers}',
   '{"region": "Springfield"}', 87, 0.0000000001, '2024-02-16T10:00:00Z', '2024-02-16T09:00:00Z',
   'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb', null),
  (20, '22222222-2222-2222-2222-222222222222', null, 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb',
   'Security review notes', 'Rotate the volcano access codes monthly.', 'draft', '{security,internal}',
   '{}', 0, null, null, '2024-02-18T09:00:00Z', 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb', null)
on conflict do nothing;

select setval(
  pg_get_serial_sequence('public.posts', 'id'),
  greatest((select max(id) from public.posts), 1)
);

insert into public.documents (id, tenant_id, owner_id, title, content, created_at) values
  ('d0000000-0000-0000-0000-000000000001', '11111111-1111-1111-1111-111111111111', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa',
   'Acme roadmap', 'Q1: rocket skates. Q2: giant magnet. Q3: portable holes v2.', '2024-02-01T09:00:00Z'),
  ('d0000000-0000-0000-0000-000000000002', '11111111-1111-1111-1111-111111111111', 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa',
   'Alice''s notes', 'Remember to order more anvils.', '2024-02-02T09:00:00Z'),
  ('d0000000-0000-0000-0000-000000000003', '22222222-2222-2222-2222-222222222222', 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb',
   'Globex budget', 'Volcano maintenance: a lot.', '2024-02-03T09:00:00Z')
on conflict do nothing;

insert into public.document_shares (document_id, user_id, permission, created_at) values
  ('d0000000-0000-0000-0000-000000000001', 'cccccccc-cccc-cccc-cccc-cccccccccccc', 'view', '2024-02-01T10:00:00Z'),
  ('d0000000-0000-0000-0000-000000000001', 'dddddddd-dddd-dddd-dddd-dddddddddddd', 'edit', '2024-02-01T10:00:00Z')
on conflict do nothing;

insert into public.type_samples (
  id, tenant_id, i2, i4, i8, f4, f8, num, flag, label, vc, uid, ts, ts_local, d, t, iv, js, jsb, bin,
  tags, ints, mood
) overriding system value values
  (1, '11111111-1111-1111-1111-111111111111', -32768, 2147483647, 9223372036854775807, 1.5, 3.141592653589793,
   '12345678901234567890.123456789012345678', true, 'hello, wörld', 'varchar value',
   'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', '2024-02-29T12:34:56.123456Z', '2024-02-29 12:34:56.654321',
   '2024-02-29', '23:59:59.999999', '1 year 2 mons 3 days 04:05:06.789', '{"a": [1, 2.5, "x", null]}',
   '{"nested": {"big": 9007199254740993, "ok": true}}', '\x00ff10deadbeef', '{alpha,beta,"with space"}',
   '{-9223372036854775808,0,9007199254740993}', 'happy'),
  (2, '11111111-1111-1111-1111-111111111111', null, null, null, null, null, null, null, null, null, null, null,
   null, null, null, null, null, null, null, null, null, null)
on conflict do nothing;

select setval(
  pg_get_serial_sequence('public.type_samples', 'id'),
  greatest((select max(id) from public.type_samples), 1)
);
