import { createTestDatabase, type TestDatabase, USERS } from '@sluice/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// sluice.visible_versions_<oid> (core migration 000006, created by sluice.enable_changes) applies
// a table's SELECT policies to row versions passed in as text. Fed the rows as they are now, it
// must answer exactly what a plain SELECT under each role and claims document answers, for every
// captured table of the reference schema; version-visibility.test.ts checks versions that
// differ from the current rows, end to end.

let db: TestDatabase;
let admin: pg.Client;
let client: pg.Client;

const IDENTITIES: { role: string; claims: string }[] = [
  ...[USERS.alice, USERS.bob, USERS.carol, USERS.dave].map((sub) => ({
    role: 'authenticated',
    claims: JSON.stringify({ sub, role: 'authenticated' }),
  })),
  { role: 'anon', claims: '{}' },
];

beforeAll(async () => {
  db = await createTestDatabase();
  admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
  client = new pg.Client({ connectionString: db.appUrl });
  await client.connect();
});

afterAll(async () => {
  await client?.end();
  await admin?.end();
  await db?.drop();
});

/** Runs `fn` in a rolled-back transaction as `role`. */
async function as<T>(role: string, fn: () => Promise<T>): Promise<T> {
  await client.query('begin read only');
  try {
    await client.query(`select set_config('role', $1, true)`, [role]);
    return await fn();
  } finally {
    await client.query('rollback');
  }
}

interface Versions {
  readonly oid: string;
  readonly columns: string[];
  /** Each row's values as PostgreSQL text, in column order, and its ctid. */
  readonly rows: { ctid: string; values: (string | null)[] }[];
}

async function currentVersions(table: string): Promise<Versions> {
  const meta = await admin.query<{ oid: string; columns: string[] }>(
    `select c.oid::text as oid, array_agg(a.attname::text order by a.attnum) as columns
       from pg_class c join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
      where c.oid = $1::regclass group by c.oid`,
    [table],
  );
  const { oid, columns } = meta.rows[0] as { oid: string; columns: string[] };
  const list = columns.map((c) => `${pg.escapeIdentifier(c)}::text`).join(', ');
  const rows = await admin.query<{ ctid: string; values: (string | null)[] }>(
    `select ctid::text as ctid, array[${list}] as values from ${table} order by ctid`,
  );
  return { oid, columns, rows: rows.rows };
}

async function visibleVersions(v: Versions, claims: string[], wanted: (string | null)[]) {
  return client.query<{ claim_index: number; record_index: number }>(
    `select claim_index, record_index from sluice.visible_versions_${v.oid}($1::text[], $2::text[], $3::text[], $4::text[])`,
    [claims, v.columns, v.rows.map((r) => r.values), wanted],
  );
}

describe('sluice.visible_versions_<oid>', () => {
  it.each([
    'public.tenants',
    'public.tenant_memberships',
    'public.profiles',
    'public.projects',
    'public.posts',
    'public.documents',
    'public.document_shares',
    'public.type_samples',
  ])('answers like a SELECT under each role and claims document: %s', async (table) => {
    const v = await currentVersions(table);
    expect(v.rows.length).toBeGreaterThan(0);
    const all = `{${v.rows.map((_, i) => i + 1).join(',')}}`;
    let somebodySeesLess = false;
    for (const role of ['authenticated', 'anon']) {
      const identities = IDENTITIES.filter((i) => i.role === role);
      const readable = (
        await client.query<{ ok: boolean }>(`select has_table_privilege($1, $2, 'SELECT') as ok`, [
          role,
          table,
        ])
      ).rows[0]?.ok;
      if (!readable) continue;
      await as(role, async () => {
        const got = await visibleVersions(
          v,
          identities.map((i) => i.claims),
          identities.map((_, i) => (i === 0 ? all : null)),
        );
        for (const [n, identity] of identities.entries()) {
          await client.query(`select set_config('request.jwt.claims', $1, true)`, [identity.claims]);
          const want = (await client.query<{ ctid: string }>(`select ctid::text as ctid from ${table}`)).rows
            .map((r) => r.ctid)
            .sort();
          const seen = got.rows
            .filter((r) => r.claim_index === n + 1)
            .map((r) => v.rows[r.record_index - 1]?.ctid as string)
            .sort();
          expect(seen, `${table} ${identity.claims}`).toEqual(want);
          if (want.length < v.rows.length) somebodySeesLess = true;
        }
      });
    }
    // The reference schema hides something in every table from someone (type_samples excepted).
    if (table !== 'public.type_samples') expect(somebodySeesLess).toBe(true);
  });

  it('asks each claims document only about the versions it names (null: those of the one before)', async () => {
    const v = await currentVersions('public.posts');
    await as('authenticated', async () => {
      const claims = IDENTITIES.filter((i) => i.role === 'authenticated').map((i) => i.claims);
      const got = await visibleVersions(v, claims.slice(0, 3), ['{1}', null, '{}']);
      expect(got.rows.every((r) => r.record_index === 1 && r.claim_index <= 2)).toBe(true);
    });
  });

  it('rebuilds the columns the policies read, and the whole row for a policy that reads it', async () => {
    await admin.query('create table public.vv_whole (id int primary key, v text, other text)');
    await admin.query('alter table public.vv_whole enable row level security');
    await admin.query(
      `create policy vv_whole_read on public.vv_whole for select to authenticated
         using (to_jsonb(vv_whole) ->> 'v' = 'yes' and other is distinct from 'hidden')`,
    );
    await admin.query('grant select on public.vv_whole to authenticated');
    await admin.query(`select sluice.enable_changes('public.vv_whole')`);
    await admin.query(
      `insert into public.vv_whole values (1, 'yes', null), (2, 'no', null), (3, 'yes', 'hidden')`,
    );
    const v = await currentVersions('public.vv_whole');
    await as('authenticated', async () => {
      const got = await visibleVersions(v, ['{}'], ['{1,2,3}']);
      expect(got.rows.map((r) => v.rows[r.record_index - 1]?.values[0])).toEqual(['1']);
    });
  });

  it('refuses to answer with out-of-date policies or columns, and refresh_version_check brings it up to date', async () => {
    await admin.query('create table public.vv_probe (id int primary key, owner uuid)');
    await admin.query('alter table public.vv_probe enable row level security');
    await admin.query(
      `create policy vv_probe_all on public.vv_probe for select to authenticated using (true)`,
    );
    await admin.query('grant select on public.vv_probe to authenticated');
    await admin.query(`select sluice.enable_changes('public.vv_probe')`);
    await admin.query(`insert into public.vv_probe values (1, null)`);
    const v = await currentVersions('public.vv_probe');
    const ask = () => as('authenticated', () => visibleVersions(v, ['{}'], ['{1}']));
    expect((await ask()).rows).toHaveLength(1);
    // A tightened policy: the old check must not answer.
    await admin.query(`alter policy vv_probe_all on public.vv_probe using (owner = (select auth.uid()))`);
    await expect(ask()).rejects.toMatchObject({ code: '55000', hint: 'sluice_stale_version_check' });
    await client.query(`select sluice.refresh_version_check('public.vv_probe')`);
    expect((await ask()).rows).toHaveLength(0);
    // Columns that are not the function's: refused too.
    await expect(
      as('authenticated', () =>
        client.query(
          `select * from sluice.visible_versions_${v.oid}($1::text[], $2::text[], $3::text[], $4::text[])`,
          [['{}'], ['owner', 'id'], [[null, '1']], ['{1}']],
        ),
      ),
    ).rejects.toMatchObject({ code: '55000' });
    // RLS off: every version is visible; disable_changes drops the check.
    await admin.query('alter table public.vv_probe disable row level security');
    await client.query(`select sluice.refresh_version_check('public.vv_probe')`);
    expect((await ask()).rows).toHaveLength(1);
    await admin.query(`select sluice.disable_changes('public.vv_probe')`);
    await expect(ask()).rejects.toMatchObject({ code: '42883' });
    await expect(
      client.query(`select sluice.refresh_version_check('public.vv_probe')`),
    ).rejects.toMatchObject({
      code: '55000',
    });
  });
});
