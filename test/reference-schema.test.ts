import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { createTestDatabase, type TestDatabase } from '@sluice/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// The migration runner lives in packages/migrate; this test applies the SQL files directly, one
// simple query per file as golang-migrate does, so it checks the SQL itself.

const root = path.resolve(import.meta.dirname, '..');
const coreDir = path.join(root, 'packages/db/migrations');
const appDir = path.join(root, 'migrations');
const seedFile = path.join(root, 'db/seed.sql');

const ACME = '11111111-1111-1111-1111-111111111111';
const GLOBEX = '22222222-2222-2222-2222-222222222222';
const ALICE = 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa';
const BOB = 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb';
const CAROL = 'cccccccc-cccc-cccc-cccc-cccccccccccc';
const DAVE = 'dddddddd-dddd-dddd-dddd-dddddddddddd';
const ROADMAP = 'd0000000-0000-0000-0000-000000000001';

async function migrationFiles(dir: string, direction: 'up' | 'down'): Promise<string[]> {
  const suffix = `.${direction}.sql`;
  const names = (await readdir(dir)).filter((n) => /^\d{6}_/.test(n) && n.endsWith(suffix)).sort();
  return names.map((n) => path.join(dir, n));
}

async function runFiles(client: pg.Client, files: string[]): Promise<void> {
  for (const file of files) {
    try {
      await client.query(await readFile(file, 'utf8'));
    } catch (error) {
      throw new Error(`${path.relative(root, file)}: ${(error as Error).message}`, { cause: error });
    }
  }
}

async function upAll(client: pg.Client): Promise<void> {
  await runFiles(client, await migrationFiles(coreDir, 'up'));
  await runFiles(client, await migrationFiles(appDir, 'up'));
}

async function downAll(client: pg.Client): Promise<void> {
  await runFiles(client, (await migrationFiles(appDir, 'down')).reverse());
  await runFiles(client, (await migrationFiles(coreDir, 'down')).reverse());
}

async function seed(client: pg.Client): Promise<void> {
  await client.query('begin');
  try {
    await client.query(await readFile(seedFile, 'utf8'));
    await client.query('commit');
  } catch (error) {
    await client.query('rollback');
    throw error;
  }
}

type Claims = Record<string, unknown>;

/**
 * Runs fn in a transaction as `role` with `claims`, as the data service does, and rolls back.
 * Statements that fail are expected to be run inside `attempt` so the transaction stays usable.
 */
async function as<T>(
  client: pg.Client,
  role: 'anon' | 'authenticated' | 'service_role',
  claims: Claims,
  fn: () => Promise<T>,
): Promise<T> {
  await client.query('begin');
  try {
    await client.query("select set_config('role', $1, true), set_config('request.jwt.claims', $2, true)", [
      role,
      JSON.stringify(claims),
    ]);
    return await fn();
  } finally {
    await client.query('rollback');
  }
}

const user = (sub: string): Claims => ({ sub, role: 'authenticated' });

/** Runs one statement inside a savepoint; returns its error's SQLSTATE, or undefined. */
async function attempt(
  client: pg.Client,
  sql: string,
  params: unknown[] = [],
): Promise<{ code?: string; rowCount: number }> {
  await client.query('savepoint attempt');
  try {
    const result = await client.query(sql, params);
    await client.query('release savepoint attempt');
    return { rowCount: result.rowCount ?? 0 };
  } catch (error) {
    await client.query('rollback to savepoint attempt');
    return { code: (error as { code?: string }).code, rowCount: 0 };
  }
}

describe('core and reference schema', () => {
  let db: TestDatabase;
  let client: pg.Client;

  beforeAll(async () => {
    db = await createTestDatabase({ empty: true });
    client = new pg.Client({ connectionString: db.url });
    await client.connect();
    await upAll(client);
    await seed(client);
  });

  afterAll(async () => {
    await client?.end();
    await db?.drop();
  });

  it('creates the request roles and a NOINHERIT login role that can switch to them', async () => {
    const { rows } = await client.query<{
      rolname: string;
      rolcanlogin: boolean;
      rolinherit: boolean;
      rolbypassrls: boolean;
      rolsuper: boolean;
    }>(
      `select rolname, rolcanlogin, rolinherit, rolbypassrls, rolsuper from pg_roles
       where rolname in ('anon', 'authenticated', 'service_role', 'sluice_authenticator') order by rolname`,
    );
    expect(rows.map((r) => r.rolname)).toEqual([
      'anon',
      'authenticated',
      'service_role',
      'sluice_authenticator',
    ]);
    const byName = Object.fromEntries(rows.map((r) => [r.rolname, r]));
    expect(byName.anon?.rolcanlogin).toBe(false);
    expect(byName.service_role?.rolbypassrls).toBe(true);
    expect(byName.sluice_authenticator).toMatchObject({
      rolcanlogin: true,
      rolinherit: false,
      rolsuper: false,
    });
    const member = await client.query<{ a: boolean; b: boolean; c: boolean; usage: boolean }>(
      `select pg_has_role('sluice_authenticator', 'anon', 'MEMBER') as a,
              pg_has_role('sluice_authenticator', 'authenticated', 'MEMBER') as b,
              pg_has_role('sluice_authenticator', 'service_role', 'MEMBER') as c,
              pg_has_role('sluice_authenticator', 'service_role', 'USAGE') as usage`,
    );
    // Member of all three, but NOINHERIT: it holds none of their privileges until it switches.
    expect(member.rows[0]).toEqual({ a: true, b: true, c: true, usage: false });
  });

  it('reads claims with auth.* and never throws on a malformed sub', async () => {
    const row = await as(
      client,
      'authenticated',
      { sub: ALICE, role: 'authenticated', tenant_id: ACME },
      async () => {
        const { rows } = await client.query(
          `select auth.uid() as uid, auth.role() as role, auth.tenant_id() as tenant, auth.jwt() ->> 'sub' as sub`,
        );
        return rows[0];
      },
    );
    expect(row).toEqual({ uid: ALICE, role: 'authenticated', tenant: ACME, sub: ALICE });

    const bad = await as(client, 'authenticated', { sub: 'github|12345', tenant_id: 'nope' }, async () => {
      const { rows } = await client.query(
        `select auth.uid() as uid, auth.tenant_id() as tenant, auth.jwt() ->> 'sub' as sub`,
      );
      return rows[0];
    });
    expect(bad).toEqual({ uid: null, tenant: null, sub: 'github|12345' });

    // Outside a request: no claims at all, and the empty string the setting holds afterwards.
    const none = await client.query(`select auth.uid() as uid, auth.role() as role, auth.jwt() as jwt`);
    expect(none.rows[0]).toEqual({ uid: null, role: null, jwt: {} });
  });

  it('confines a member to the posts of their tenants', async () => {
    const rows = await as(client, 'authenticated', user(ALICE), async () => {
      const r = await client.query<{ id: string; tenant_id: string }>(
        'select id, tenant_id from posts order by id',
      );
      return r.rows;
    });
    expect(new Set(rows.map((r) => r.tenant_id))).toEqual(new Set([ACME]));
    // Acme's 10 posts minus the two soft-deleted ones; alice (admin) also sees the soft-deleted
    // ones as trash, so filter by the live view explicitly.
    const live = await as(client, 'authenticated', user(ALICE), async () => {
      const r = await client.query<{ id: string }>(
        'select id from posts where deleted_at is null order by id',
      );
      return r.rows.map((x) => Number(x.id));
    });
    expect(live).toEqual([1, 2, 3, 4, 5, 6, 9, 10]);

    const carolSees = await as(client, 'authenticated', user(CAROL), async () => {
      const r = await client.query<{ id: string }>('select id from posts order by id');
      return r.rows.map((x) => Number(x.id));
    });
    // A viewer does not see soft-deleted posts at all.
    expect(carolSees).toEqual([1, 2, 3, 4, 5, 6, 9, 10]);

    const bobCount = await as(client, 'authenticated', user(BOB), async () => {
      const r = await client.query<{ n: string }>('select tenant_post_count($1) as n', [ACME]);
      return Number(r.rows[0]?.n);
    });
    expect(bobCount).toBe(0);
  });

  it('lets anon read only published, live posts', async () => {
    const ids = await as(client, 'anon', { role: 'anon' }, async () => {
      const r = await client.query<{ id: string }>('select id from posts order by id');
      return r.rows.map((x) => Number(x.id));
    });
    expect(ids).toEqual([1, 2, 5, 9, 11, 12, 15, 19]);
    const denied = await as(client, 'anon', { role: 'anon' }, () =>
      attempt(client, 'select * from documents'),
    );
    expect(denied.code).toBe('42501');
  });

  it('keeps int8 values beyond 2^53 exact', async () => {
    const { rows } = await client.query<{ view_count: string }>(
      'select view_count::text from posts where id = 1',
    );
    expect(rows[0]?.view_count).toBe('9007199254740993');
  });

  it('refuses updates from a viewer and lets an editor write only in their tenant', async () => {
    const carol = await as(client, 'authenticated', user(CAROL), () =>
      attempt(client, `update posts set title = 'hijacked' where id = 1`),
    );
    expect(carol).toEqual({ rowCount: 0 });

    const daveAcme = await as(client, 'authenticated', user(DAVE), async () => {
      const r = await client.query<{ author_id: string; created_by: string }>(
        `insert into posts (tenant_id, title) values ($1, 'by dave') returning author_id, created_by`,
        [ACME],
      );
      return r.rows[0];
    });
    expect(daveAcme).toEqual({ author_id: DAVE, created_by: DAVE });

    const daveGlobex = await as(client, 'authenticated', user(DAVE), () =>
      attempt(client, `insert into posts (tenant_id, title) values ($1, 'intruder')`, [GLOBEX]),
    );
    expect(daveGlobex.code).toBe('42501');

    const carolInsert = await as(client, 'authenticated', user(CAROL), () =>
      attempt(client, `select create_post($1, 'viewer post')`, [ACME]),
    );
    expect(carolInsert.code).toBe('42501');
  });

  it('keeps audit columns and supports soft delete by the author', async () => {
    const row = await as(client, 'authenticated', user(DAVE), async () => {
      await client.query(`update posts set title = 'Rocket skates review (updated)' where id = 2`);
      const soft = await client.query(`update posts set deleted_at = now() where id = 2`);
      const r = await client.query<{ updated_by: string; updated: boolean; deleted: boolean }>(
        `select updated_by, updated_at is not null as updated, deleted_at is not null as deleted from posts where id = 2`,
      );
      const move = await attempt(client, 'update posts set tenant_id = $1 where id = 4', [GLOBEX]);
      return { soft: soft.rowCount, ...r.rows[0], moveCode: move.code };
    });
    expect(row).toEqual({ soft: 1, updated_by: DAVE, updated: true, deleted: true, moveCode: '23514' });
  });

  it('shares documents for viewing and editing', async () => {
    const carol = await as(client, 'authenticated', user(CAROL), async () => {
      const seen = await client.query<{ id: string }>('select id from documents order by id');
      const update = await attempt(client, `update documents set title = 'carol was here' where id = $1`, [
        ROADMAP,
      ]);
      return { seen: seen.rows.map((r) => r.id), update };
    });
    expect(carol.seen).toEqual([ROADMAP]);
    expect(carol.update).toEqual({ rowCount: 0 });

    const dave = await as(client, 'authenticated', user(DAVE), async () => {
      const update = await attempt(client, `update documents set content = 'edited by dave' where id = $1`, [
        ROADMAP,
      ]);
      const steal = await attempt(client, 'update documents set owner_id = $1 where id = $2', [
        DAVE,
        ROADMAP,
      ]);
      const remove = await attempt(client, 'delete from documents where id = $1', [ROADMAP]);
      const shares = await client.query<{ user_id: string }>('select user_id from document_shares');
      return { update, steal: steal.code, remove, shares: shares.rows.map((r) => r.user_id) };
    });
    expect(dave).toEqual({
      update: { rowCount: 1 },
      steal: '42501',
      remove: { rowCount: 0 },
      shares: [DAVE],
    });

    const alice = await as(client, 'authenticated', user(ALICE), async () => {
      const shares = await client.query('select 1 from document_shares where document_id = $1', [ROADMAP]);
      const own = await client.query('select 1 from documents where owner_id = $1', [ALICE]);
      return { shares: shares.rowCount, own: own.rowCount };
    });
    expect(alice).toEqual({ shares: 2, own: 2 });

    const bob = await as(client, 'authenticated', user(BOB), async () => {
      const r = await client.query('select 1 from documents where id = $1', [ROADMAP]);
      return r.rowCount;
    });
    expect(bob).toBe(0);
  });

  it('exposes SQL functions that run under the caller’s policies', async () => {
    const result = await as(client, 'authenticated', user(ALICE), async () => {
      const tenants = await client.query<{ slug: string }>('select slug from my_tenants()');
      const found = await client.query<{ id: string }>(`select id from search_posts('magnet')`);
      const created = await client.query<{ author_id: string; status: string }>(
        `select author_id, status from create_post($1, 'Hello', 'world')`,
        [ACME],
      );
      const failed = await attempt(client, `select fail_with('nope')`);
      return {
        tenants: tenants.rows.map((r) => r.slug),
        found: found.rows.map((r) => Number(r.id)),
        created: created.rows[0],
        failed: failed.code,
      };
    });
    expect(result).toEqual({
      tenants: ['acme'],
      found: [9, 3],
      created: { author_id: ALICE, status: 'draft' },
      failed: 'P0001',
    });
  });

  it('round-trips the type samples for authenticated users only', async () => {
    const row = await as(client, 'authenticated', user(CAROL), async () => {
      const r = await client.query(
        `insert into type_samples (i8, mood, ints) values (9223372036854775807, 'ok', '{1,2}')
         returning i8::text, mood::text, ints::text`,
      );
      return r.rows[0];
    });
    expect(row).toEqual({ i8: '9223372036854775807', mood: 'ok', ints: '{1,2}' });
    const anon = await as(client, 'anon', {}, () => attempt(client, 'select * from type_samples'));
    expect(anon.code).toBe('42501');
  });

  it('notifies sluice_schema after DDL', async () => {
    const listener = new pg.Client({ connectionString: db.url });
    await listener.connect();
    try {
      const notified = new Promise<string>((resolve) => {
        listener.on('notification', (n) => resolve(n.channel));
      });
      await listener.query('listen sluice_schema');
      await client.query('create table public.ddl_probe (id int)');
      await client.query('drop table public.ddl_probe');
      expect(await notified).toBe('sluice_schema');
    } finally {
      await listener.end();
    }
  });

  it('lets a role without access to the sluice schema run DDL under the event trigger', async () => {
    await client.query('begin');
    try {
      await client.query('grant create on schema public to authenticated');
      await client.query("select set_config('role', 'authenticated', true)");
      await client.query('create table public.owned_by_authenticated (id int)');
      const { rows } = await client.query<{ owner: string }>(
        `select pg_get_userbyid(relowner) as owner from pg_class where relname = 'owned_by_authenticated'`,
      );
      expect(rows[0]?.owner).toBe('authenticated');
    } finally {
      await client.query('rollback');
    }
  });

  it('migrates down to an empty database and up again, and the seed is idempotent', async () => {
    await seed(client);
    await downAll(client);
    const { rows } = await client.query<{ kind: string; name: string }>(
      `select 'relation' as kind, n.nspname || '.' || c.relname as name
         from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname in ('public', 'auth', 'app', 'sluice')
       union all
       select 'function', n.nspname || '.' || p.proname
         from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname in ('public', 'auth', 'app', 'sluice')
       union all
       select 'type', n.nspname || '.' || t.typname
         from pg_type t join pg_namespace n on n.oid = t.typnamespace
        where n.nspname in ('public', 'auth', 'app', 'sluice')
       union all
       select 'schema', nspname from pg_namespace where nspname in ('auth', 'app', 'sluice')
       union all
       select 'event trigger', evtname from pg_event_trigger where evtname like 'sluice%'`,
    );
    expect(rows).toEqual([]);
    const grants = await client.query<{ acl: string | null }>(
      `select nspacl::text as acl from pg_namespace where nspname = 'public'`,
    );
    expect(grants.rows[0]?.acl ?? '').not.toMatch(/anon|authenticated|service_role/);

    await upAll(client);
    await seed(client);
    const count = await client.query<{ n: string }>('select count(*) as n from posts');
    expect(Number(count.rows[0]?.n)).toBe(20);
    // The identity sequence continues after the seeded ids.
    const next = await as(client, 'authenticated', user(ALICE), async () => {
      const r = await client.query<{ id: string }>(
        `insert into posts (tenant_id, title) values ($1, 'x') returning id`,
        [ACME],
      );
      return Number(r.rows[0]?.id);
    });
    expect(next).toBe(21);
  });
});
