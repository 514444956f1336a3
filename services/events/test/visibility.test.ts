import { createTestDatabase, type TestDatabase, USERS } from '@sluice/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// sluice.visible_rows (core migration 000007) and the per-table lookups sluice.enable_changes
// creates (000007, 000008) must answer exactly what a plain SELECT under each
// claims document answers, whatever the number of claims, key columns or roles in the session.

let db: TestDatabase;
let client: pg.Client;

const claimsOf = (sub: string) => JSON.stringify({ sub, role: 'authenticated' });
const CLAIMS = [USERS.alice, USERS.bob, USERS.carol, USERS.dave].map(claimsOf);

beforeAll(async () => {
  db = await createTestDatabase();
  client = new pg.Client({ connectionString: db.appUrl });
  await client.connect();
});

afterAll(async () => {
  await client?.end();
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

/** The keys (JSON of text values) `claims` can SELECT, with a plain query. */
async function selectable(claims: string, sql: string, params: unknown[]): Promise<string[]> {
  await client.query(`select set_config('request.jwt.claims', $1, true)`, [claims]);
  const r = await client.query<{ key: string }>(sql, params);
  return r.rows.map((row) => row.key).sort();
}

async function visibleRows(
  claims: string[],
  table: string,
  columns: string[],
  types: string[],
  keys: (string | null)[],
  via: 'generic' | 'per-table' = 'generic',
): Promise<string[][]> {
  let r: pg.QueryResult<{ claim_index: number; key: string }>;
  if (via === 'per-table') {
    const oid = (await client.query<{ oid: string }>('select $1::regclass::oid::text as oid', [table]))
      .rows[0]?.oid;
    r = await client.query(
      `select claim_index, key from sluice.visible_rows_${oid}($1::text[], $2::text[])`,
      [claims, keys],
    );
  } else {
    r = await client.query(
      'select claim_index, key from sluice.visible_rows($1::text[], $2::regclass, $3::text[], $4::regtype[], $5::text[])',
      [claims, table, columns, types, keys],
    );
  }
  const out = claims.map(() => [] as string[]);
  for (const row of r.rows) out[row.claim_index - 1]?.push(JSON.stringify(JSON.parse(row.key)));
  return out.map((list) => list.sort());
}

const literal = (values: string[]) => `{${values.map((v) => `"${v.replace(/["\\]/g, '\\$&')}"`).join(',')}}`;

describe('sluice.visible_rows', () => {
  it.each(['generic', 'per-table'] as const)(
    '%s: answers like a SELECT under each claims document (single-column key; null repeats the keys)',
    async (via) => {
      const admin = new pg.Client({ connectionString: db.url });
      await admin.connect();
      const all = (
        await admin.query<{ id: string }>('select id::text from public.posts order by id')
      ).rows.map((r) => r.id);
      await admin.end();
      expect(all.length).toBeGreaterThan(1);
      const keys = [...all, '999999'];
      await as('authenticated', async () => {
        const got = await visibleRows(
          CLAIMS,
          'public.posts',
          ['id'],
          ['bigint'],
          [literal(keys), null, null, null],
          via,
        );
        for (const [i, claims] of CLAIMS.entries()) {
          const want = await selectable(
            claims,
            'select json_build_array(id::text)::text as key from public.posts where id = any ($1::bigint[])',
            [keys],
          );
          expect(got[i]).toEqual(want.map((k) => JSON.stringify(JSON.parse(k))));
        }
        // Alice (Acme) and Bob (Globex) see different rows, so the claims really changed per document.
        expect(got[0]).not.toEqual(got[1]);
        // Each document may ask about its own rows.
        const own = await visibleRows(
          CLAIMS.slice(0, 2),
          'public.posts',
          ['id'],
          ['bigint'],
          [literal(all.slice(0, 1)), '{}'],
          via,
        );
        expect(own[1]).toEqual([]);
        expect(own[0]?.every((k) => got[0]?.includes(k))).toBe(true);
      });
      // The same session's prepared lookup, now under anon: replanned for the role (published only).
      await as('anon', async () => {
        const got = await visibleRows(['{}'], 'public.posts', ['id'], ['bigint'], [literal(all)], via);
        const want = await selectable(
          '{}',
          'select json_build_array(id::text)::text as key from public.posts where id = any ($1::bigint[])',
          [all],
        );
        expect(got[0]).toEqual(want.map((k) => JSON.stringify(JSON.parse(k))));
      });
    },
  );

  it('takes composite keys', async () => {
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    const rows = (
      await admin.query<{ tenant_id: string; user_id: string }>(
        'select tenant_id::text, user_id::text from public.tenant_memberships order by 1, 2',
      )
    ).rows;
    await admin.end();
    expect(rows.length).toBeGreaterThan(1);
    const flat = rows.flatMap((r) => [r.tenant_id, r.user_id]);
    await as('authenticated', async () => {
      const got = await visibleRows(
        CLAIMS,
        'public.tenant_memberships',
        ['tenant_id', 'user_id'],
        ['uuid', 'uuid'],
        [literal(flat), null, null, null],
      );
      for (const [i, claims] of CLAIMS.entries()) {
        const want = await selectable(
          claims,
          `select json_build_array(tenant_id::text, user_id::text)::text as key from public.tenant_memberships
           where (tenant_id, user_id) in (select * from unnest($1::uuid[], $2::uuid[]))`,
          [rows.map((r) => r.tenant_id), rows.map((r) => r.user_id)],
        );
        expect(got[i]).toEqual(want.map((k) => JSON.stringify(JSON.parse(k))));
        expect(got[i]?.length).toBeGreaterThan(0);
      }
    });
  });

  it('refuses a table the role cannot read', async () => {
    await expect(
      as('anon', () =>
        visibleRows(['{}'], 'public.tenant_memberships', ['tenant_id', 'user_id'], ['uuid', 'uuid'], ['{}']),
      ),
    ).rejects.toMatchObject({ code: '42501' });
  });

  it('refuses key lists that do not match the claims', async () => {
    await expect(
      as('authenticated', () => visibleRows(CLAIMS, 'public.posts', ['id'], ['bigint'], ['{1}'])),
    ).rejects.toMatchObject({ code: '22023' });
  });

  it('enable_changes creates the per-table lookup (single-column keys only), disable_changes drops it', async () => {
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    try {
      await admin.query('create table public.lookup_probe (id int primary key, v text)');
      await admin.query('create table public.lookup_pair (a int, b int, primary key (a, b))');
      const exists = async (table: string) =>
        (
          await admin.query<{ ok: boolean }>(
            `select to_regprocedure('sluice.visible_rows_' || $1::regclass::oid || '(text[], text[])') is not null as ok`,
            [table],
          )
        ).rows[0]?.ok;
      expect(await exists('public.lookup_probe')).toBe(false);
      await admin.query(
        `select sluice.enable_changes('public.lookup_probe'), sluice.enable_changes('public.lookup_pair')`,
      );
      expect(await exists('public.lookup_probe')).toBe(true);
      expect(await exists('public.lookup_pair')).toBe(false);
      await admin.query(`select sluice.disable_changes('public.lookup_probe')`);
      expect(await exists('public.lookup_probe')).toBe(false);
    } finally {
      await admin.end();
    }
  });

  it('pins the lookups to a generic plan without sequential scans (a plan cached while a table was small must not scan it)', async () => {
    const { rows } = await client.query<{ name: string; config: string[] }>(
      `select p.proname as name, p.proconfig as config from pg_catalog.pg_proc p
        where p.pronamespace = 'sluice'::regnamespace
          and (p.proname = 'visible_rows' or p.proname = 'visible_rows_' || 'public.posts'::regclass::oid)`,
    );
    expect(rows).toHaveLength(2);
    for (const row of rows) {
      expect(row.config).toEqual(
        expect.arrayContaining(['plan_cache_mode=force_generic_plan', 'enable_seqscan=off']),
      );
    }
  });
});
