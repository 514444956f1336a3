import { ACME, createTestDatabase, GLOBEX, type TestDatabase, USERS } from '@sluice/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// The reference schema's security rules (docs/reference-schema.md), checked as each user against
// the migrated and seeded template: every test runs in a transaction that is rolled back, and
// switches role and claims inside it as the data service does.

const { alice: ALICE, bob: BOB, carol: CAROL, dave: DAVE } = USERS;
const EVE = 'eeeeeeee-eeee-eeee-eeee-eeeeeeeeeeee'; // signs up during a test; no profile in the seed
const ACME_PROJECT = 'a0000000-0000-0000-0000-000000000001';
const GLOBEX_PROJECT = 'b0000000-0000-0000-0000-000000000001';
const ROADMAP = 'd0000000-0000-0000-0000-000000000001'; // alice's, shared: carol view, dave edit
const NOTES = 'd0000000-0000-0000-0000-000000000002'; // alice's, not shared
const RANDOM = '0f0f0f0f-0f0f-4f0f-8f0f-0f0f0f0f0f0f';

let db: TestDatabase;
let client: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase();
  client = new pg.Client({ connectionString: db.url });
  await client.connect();
});

afterAll(async () => {
  await client?.end();
  await db?.drop();
});

/** Runs fn in a transaction that is always rolled back. */
async function tx<T>(fn: () => Promise<T>): Promise<T> {
  await client.query('begin');
  try {
    return await fn();
  } finally {
    await client.query('rollback');
  }
}

/**
 * Switches the transaction to a request as `who` (a user id: authenticated with that sub),
 * the service role, or back to the superuser (maintenance, no claims).
 */
async function actAs(who: string | 'service' | 'superuser'): Promise<void> {
  const [role, claims] =
    who === 'superuser'
      ? ['none', '']
      : who === 'service'
        ? ['service_role', JSON.stringify({ role: 'service_role' })]
        : ['authenticated', JSON.stringify({ sub: who, role: 'authenticated' })];
  await client.query("select set_config('role', $1, true), set_config('request.jwt.claims', $2, true)", [
    role,
    claims,
  ]);
}

type Outcome = { code?: string; rows: Record<string, unknown>[] };

/** Runs one statement inside a savepoint: its rows, or its error's SQLSTATE. */
async function attempt(sql: string, params: unknown[] = []): Promise<Outcome> {
  await client.query('savepoint attempt');
  try {
    const result = await client.query(sql, params);
    await client.query('release savepoint attempt');
    return { rows: result.rows };
  } catch (error) {
    await client.query('rollback to savepoint attempt');
    return { code: (error as { code?: string }).code, rows: [] };
  }
}

async function rows(sql: string, params: unknown[] = []): Promise<Record<string, unknown>[]> {
  return (await client.query(sql, params)).rows;
}

/**
 * Evaluates the table's SELECT policies for the current claims on a stored version of a row
 * (its to_jsonb), the way change streams decide whether a logged version may be delivered.
 */
async function versionVisible(table: string, version: unknown): Promise<boolean> {
  const policies = await rows(
    `select qual from pg_policies where schemaname = 'public' and tablename = $1
       and cmd in ('SELECT', 'ALL') and 'authenticated' = any (roles) and permissive = 'PERMISSIVE'`,
    [table],
  );
  const qual = policies.map((p) => `(${p.qual})`).join(' or ') || 'false';
  const result = await rows(
    `select coalesce(${qual}, false) as visible from jsonb_populate_record(null::public.${table}, $1::jsonb)`,
    [JSON.stringify(version)],
  );
  return result[0]?.visible === true;
}

describe('membership needs the invited user’s consent', () => {
  it('an admin adding a stranger learns nothing about them and gives them nothing', async () => {
    const seen = await tx(async () => {
      await actAs(ALICE);
      // The admin cannot make the membership accepted on the invitee's behalf.
      const invite = await attempt(
        `insert into tenant_memberships (tenant_id, user_id, role, accepted_at) values ($1, $2, 'viewer', now())
         returning accepted_at`,
        [ACME, BOB],
      );
      const profile = await rows('select * from profiles where id = $1', [BOB]);
      const accept = await attempt(
        'update tenant_memberships set accepted_at = now() where tenant_id = $1 and user_id = $2',
        [ACME, BOB],
      );
      await actAs(BOB);
      const posts = await rows('select id from posts where tenant_id = $1', [ACME]);
      const tenants = await rows('select id from tenants where id = $1', [ACME]);
      const aliceProfile = await rows('select id from profiles where id = $1', [ALICE]);
      const members = await rows('select user_id, accepted_at from tenant_memberships where tenant_id = $1', [
        ACME,
      ]);
      return { invite, profile, accept: accept.code, posts, tenants, aliceProfile, members };
    });
    expect(seen).toEqual({
      invite: { rows: [{ accepted_at: null }] },
      profile: [],
      accept: '42501',
      posts: [],
      tenants: [],
      aliceProfile: [],
      // The invitee sees their own invitation (to accept or decline it), nobody else's membership.
      members: [{ user_id: BOB, accepted_at: null }],
    });
  });

  it('the invitee accepts (and only that), then reads the tenant; declining removes the invitation', async () => {
    const seen = await tx(async () => {
      await actAs(ALICE);
      await rows(`insert into tenant_memberships (tenant_id, user_id, role) values ($1, $2, 'editor')`, [
        ACME,
        BOB,
      ]);
      await actAs(BOB);
      const promote = await attempt(
        `update tenant_memberships set role = 'admin' where tenant_id = $1 and user_id = $2`,
        [ACME, BOB],
      );
      const accept = await rows(
        `update tenant_memberships set accepted_at = '2000-01-01' where tenant_id = $1 and user_id = $2
         returning role, accepted_at = now() as stamped`,
        [ACME, BOB],
      );
      const posts = await rows('select id from posts where tenant_id = $1 and deleted_at is null', [ACME]);
      const unaccept = await attempt(
        'update tenant_memberships set accepted_at = null where tenant_id = $1 and user_id = $2',
        [ACME, BOB],
      );
      await actAs(ALICE);
      const profile = await rows('select id, display_name from profiles where id = $1', [BOB]);
      return { promote: promote.code, accept, posts: posts.length, unaccept: unaccept.code, profile };
    });
    expect(seen).toEqual({
      promote: '42501',
      accept: [{ role: 'editor', stamped: true }],
      posts: 8,
      unaccept: '42501',
      profile: [{ id: BOB, display_name: 'Bob' }],
    });

    const declined = await tx(async () => {
      await actAs(ALICE);
      await rows(`insert into tenant_memberships (tenant_id, user_id, role) values ($1, $2, 'viewer')`, [
        ACME,
        BOB,
      ]);
      await actAs(BOB);
      const decline = await rows('delete from tenant_memberships where tenant_id = $1 returning user_id', [
        ACME,
      ]);
      await actAs('superuser');
      const left = await rows('select 1 from tenant_memberships where tenant_id = $1 and user_id = $2', [
        ACME,
        BOB,
      ]);
      return { decline, left };
    });
    expect(declined).toEqual({ decline: [{ user_id: BOB }], left: [] });
  });

  it('an admin cannot hand an existing membership to a stranger or move it to another tenant', async () => {
    const seen = await tx(async () => {
      await actAs(ALICE);
      const toBob = await attempt('update tenant_memberships set user_id = $1 where user_id = $2', [
        BOB,
        CAROL,
      ]);
      await actAs('superuser');
      await rows(`insert into tenant_memberships (tenant_id, user_id, role) values ($1, $2, 'admin')`, [
        GLOBEX,
        ALICE,
      ]);
      await actAs(ALICE);
      const move = await attempt(
        'update tenant_memberships set tenant_id = $1 where tenant_id = $2 and user_id = $3',
        [GLOBEX, ACME, CAROL],
      );
      return { toBob: toBob.code, move: move.code };
    });
    expect(seen).toEqual({ toBob: '42501', move: '42501' });
  });

  it('a pending invitee cannot be given a document share', async () => {
    const seen = await tx(async () => {
      await actAs(ALICE);
      await rows(`insert into tenant_memberships (tenant_id, user_id, role) values ($1, $2, 'viewer')`, [
        ACME,
        BOB,
      ]);
      const share = await attempt(
        `insert into document_shares (document_id, user_id, permission) values ($1, $2, 'view')`,
        [NOTES, BOB],
      );
      await actAs(BOB);
      const docs = await rows('select id from documents');
      return { share: share.code, docs: docs.map((d) => d.id) };
    });
    expect(seen.share).toBe('42501');
    expect(seen.docs).not.toContain(NOTES);
  });
});

describe('membership alone does not expose private fields', () => {
  it('colleagues see a display name; the email is readable by its owner only', async () => {
    const seen = await tx(async () => {
      await actAs(CAROL);
      const colleague = await rows('select * from profiles where id = $1', [ALICE]);
      const privateRows = await rows('select id, email from profile_private order by id');
      const update = await attempt('update profile_private set email = $1 where id = $2', [
        'x@example.com',
        ALICE,
      ]);
      return { colleague, privateRows, update };
    });
    expect(Object.keys(seen.colleague[0] ?? {}).sort()).toEqual(['created_at', 'display_name', 'id']);
    expect(seen.privateRows).toEqual([{ id: CAROL, email: 'carol@acme.example' }]);
    expect(seen.update).toEqual({ rows: [] });
  });

  it('a new user signs up with their own profile only, and its created_at is the database’s', async () => {
    const seen = await tx(async () => {
      await actAs(EVE);
      const own = await rows(
        `insert into profiles (id, display_name, created_at) values ($1, 'Eve', '2000-01-01')
         returning created_at = now() as stamped`,
        [EVE],
      );
      const email = await rows(
        `insert into profile_private (id, email) values ($1, 'eve@example.com') returning id, email`,
        [EVE],
      );
      const other = await attempt(`insert into profile_private (id, email) values ($1, 'x@example.com')`, [
        ALICE,
      ]);
      return { own, email, other: other.code };
    });
    expect(seen).toEqual({
      own: [{ stamped: true }],
      email: [{ id: EVE, email: 'eve@example.com' }],
      other: '42501',
    });
  });
});

describe('references between tenant-owned rows stay inside the tenant', () => {
  it('a post cannot point at another tenant’s project, and an existing id fails like a random one', async () => {
    const seen = await tx(async () => {
      await actAs(BOB);
      const existing = await attempt(
        `insert into posts (tenant_id, title, project_id) values ($1, 'x', $2)`,
        [GLOBEX, ACME_PROJECT],
      );
      const random = await attempt(`insert into posts (tenant_id, title, project_id) values ($1, 'x', $2)`, [
        GLOBEX,
        RANDOM,
      ]);
      const own = await attempt(
        `insert into posts (tenant_id, title, project_id) values ($1, 'x', $2) returning project_id`,
        [GLOBEX, GLOBEX_PROJECT],
      );
      const repoint = await attempt('update posts set project_id = $1 where id = 11', [ACME_PROJECT]);
      await actAs('service');
      const service = await attempt('update posts set project_id = $1 where id = 11', [ACME_PROJECT]);
      return {
        existing: existing.code,
        random: random.code,
        own: own.rows,
        repoint: repoint.code,
        service: service.code,
      };
    });
    expect(seen).toEqual({
      existing: '23503',
      random: '23503',
      own: [{ project_id: GLOBEX_PROJECT }],
      repoint: '23503',
      service: '23503',
    });
  });

  it('deleting a project never writes into another tenant’s posts', async () => {
    const seen = await tx(async () => {
      await actAs(BOB);
      // The cross-tenant reference is refused (above); were it accepted, alice's delete below
      // would set Globex's post 11 project_id to null through ON DELETE SET NULL.
      await attempt('update posts set project_id = $1 where id = 11', [ACME_PROJECT]);
      await actAs(ALICE);
      await rows('delete from projects where id = $1', [ACME_PROJECT]);
      await actAs('superuser');
      return rows(
        `select tenant_id, count(*)::int as n from posts where project_id is null and id <= 20
         group by tenant_id order by tenant_id`,
      );
    });
    expect(seen).toEqual([
      { tenant_id: ACME, n: 10 },
      { tenant_id: GLOBEX, n: 6 },
    ]);
  });

  it('every foreign key to a tenant-owned table includes tenant_id on both sides', async () => {
    const bad = await rows(
      `select c.conname
         from pg_constraint c
        where c.contype = 'f' and c.connamespace = 'public'::regnamespace
          and exists (select from pg_attribute a where a.attrelid = c.confrelid and a.attname = 'tenant_id')
          and not exists (
            select from unnest(c.conkey, c.confkey) as k(col, refcol)
             where (select attname from pg_attribute where attrelid = c.conrelid and attnum = k.col) = 'tenant_id'
               and (select attname from pg_attribute where attrelid = c.confrelid and attnum = k.refcol) = 'tenant_id')
        order by 1`,
    );
    expect(bad).toEqual([]);
  });

  it('ids of tenant-owned rows cannot be chosen by clients (a duplicate would reveal another tenant’s id)', async () => {
    const seen = await tx(async () => {
      await actAs(BOB);
      const project = await attempt(`insert into projects (id, tenant_id, name) values ($1, $2, 'x')`, [
        ACME_PROJECT,
        GLOBEX,
      ]);
      const document = await attempt(`insert into documents (id, tenant_id, title) values ($1, $2, 'x')`, [
        ROADMAP,
        GLOBEX,
      ]);
      const rename = await attempt('update projects set id = $1 where id = $2', [
        ACME_PROJECT,
        GLOBEX_PROJECT,
      ]);
      return { project: project.code, document: document.code, rename: rename.code };
    });
    expect(seen).toEqual({ project: '42501', document: '42501', rename: '42501' });
  });

  it('a document is shared only with accepted members of its tenant, and never moves to a stranger', async () => {
    const seen = await tx(async () => {
      await actAs(ALICE);
      const share = await attempt(
        `insert into document_shares (document_id, user_id, permission) values ($1, $2, 'view')`,
        [NOTES, BOB],
      );
      const transfer = await attempt('update documents set owner_id = $1 where id = $2', [BOB, NOTES]);
      await actAs(BOB);
      const foreignDoc = await attempt(
        `insert into document_shares (document_id, user_id, permission) values ($1, $2, 'view')`,
        [NOTES, BOB],
      );
      const randomDoc = await attempt(
        `insert into document_shares (document_id, user_id, permission) values ($1, $2, 'view')`,
        [RANDOM, BOB],
      );
      await actAs('service');
      const service = await attempt('update documents set owner_id = $1 where id = $2', [BOB, NOTES]);
      return {
        share: share.code,
        transfer: transfer.code,
        foreignDoc: foreignDoc.code,
        randomDoc: randomDoc.code,
        service: service.code,
      };
    });
    expect(seen).toEqual({
      share: '42501',
      transfer: '23514',
      foreignDoc: '42501',
      randomDoc: '42501',
      service: '23514',
    });
  });
});

describe('audit and ownership columns are the database’s on insert as on update', () => {
  it('posts: created_*, updated_* and deleted_at cannot be forged on insert', async () => {
    const seen = await tx(async () => {
      await actAs(DAVE);
      return rows(
        `insert into posts (tenant_id, title, created_by, created_at, updated_by, updated_at, deleted_at)
         values ($1, 'forged', $2, '2000-01-01', $2, '2000-01-01', '2000-01-01')
         returning author_id, created_by, created_at = now() as created_now, updated_by, updated_at, deleted_at`,
        [ACME, ALICE],
      );
    });
    expect(seen).toEqual([
      {
        author_id: DAVE,
        created_by: DAVE,
        created_now: true,
        updated_by: null,
        updated_at: null,
        deleted_at: null,
      },
    ]);
  });

  it('posts: the author never changes to someone else, and service writes need a member author', async () => {
    const seen = await tx(async () => {
      await actAs(ALICE);
      const toBob = await attempt('update posts set author_id = $1 where id = 2', [BOB]);
      const toCarol = await attempt('update posts set author_id = $1 where id = 2', [CAROL]);
      await actAs('service');
      const insertBob = await attempt(
        `insert into posts (tenant_id, author_id, title) values ($1, $2, 'x')`,
        [ACME, BOB],
      );
      const updateBob = await attempt('update posts set author_id = $1 where id = 2', [BOB]);
      const updateCarol = await attempt('update posts set author_id = $1 where id = 2 returning author_id', [
        CAROL,
      ]);
      return {
        toBob: toBob.code,
        toCarol: toCarol.code,
        insertBob: insertBob.code,
        updateBob: updateBob.code,
        updateCarol: updateCarol.rows,
      };
    });
    expect(seen).toEqual({
      toBob: '42501',
      toCarol: '42501',
      insertBob: '23514',
      updateBob: '23514',
      updateCarol: [{ author_id: CAROL }],
    });
  });

  it('projects, documents, shares, memberships and tenants keep their audit columns', async () => {
    const seen = await tx(async () => {
      await actAs(DAVE);
      const project = await rows(
        `insert into projects (tenant_id, name, created_by, created_at) values ($1, 'p', $2, '2000-01-01')
         returning created_by, created_at = now() as stamped`,
        [ACME, ALICE],
      );
      await actAs(ALICE);
      const document = await rows(
        `insert into documents (tenant_id, title, created_at, updated_at) values ($1, 'd', '2000-01-01', '2000-01-01')
         returning owner_id, created_at = now() as stamped, updated_at`,
        [ACME],
      );
      const share = await rows(
        `insert into document_shares (document_id, user_id, permission, created_at)
         values ($1, $2, 'view', '2000-01-01') returning created_at = now() as stamped`,
        [NOTES, CAROL],
      );
      const shareUpdate = await rows(
        `update document_shares set created_at = '2000-01-01' where document_id = $1 and user_id = $2
         returning created_at = now() as stamped`,
        [NOTES, CAROL],
      );
      const invite = await rows(
        `insert into tenant_memberships (tenant_id, user_id, role, created_at) values ($1, $2, 'viewer', '2000-01-01')
         returning created_at = now() as stamped`,
        [ACME, BOB],
      );
      const tenant = await rows(
        `update tenants set created_at = '2000-01-01', name = 'Acme Corp' where id = $1
         returning created_at = '2024-01-01T09:00:00Z' as kept`,
        [ACME],
      );
      const tenantId = await attempt('update tenants set id = $1 where id = $2', [RANDOM, ACME]);
      const projectUpdate = await rows(
        `update projects set created_by = $1, created_at = '2000-01-01' where id = $2
         returning created_by, created_at = '2024-01-02T09:00:00Z' as kept`,
        [BOB, ACME_PROJECT],
      );
      return {
        project,
        document,
        share,
        shareUpdate,
        invite,
        tenant,
        tenantId: tenantId.code,
        projectUpdate,
      };
    });
    expect(seen).toEqual({
      project: [{ created_by: DAVE, stamped: true }],
      document: [{ owner_id: ALICE, stamped: true, updated_at: null }],
      share: [{ stamped: true }],
      shareUpdate: [{ stamped: true }],
      invite: [{ stamped: true }],
      tenant: [{ kept: true }],
      tenantId: '42501',
      projectUpdate: [{ created_by: ALICE, kept: true }],
    });
  });

  it('an author who left the tenant can no longer delete their posts', async () => {
    const seen = await tx(async () => {
      await actAs(ALICE);
      await rows('delete from tenant_memberships where tenant_id = $1 and user_id = $2', [ACME, DAVE]);
      await actAs(DAVE);
      // No WHERE clause and no RETURNING: only the DELETE policy decides, the SELECT policies
      // do not apply.
      return (await client.query('delete from posts')).rowCount;
    });
    expect(seen).toBe(0);
  });
});

describe('document visibility depends only on the document row', () => {
  it('sharing writes the grantees into the row; clients cannot write them directly', async () => {
    const seen = await tx(async () => {
      await actAs(ALICE);
      await rows(`insert into document_shares (document_id, user_id, permission) values ($1, $2, 'view')`, [
        NOTES,
        CAROL,
      ]);
      await actAs(CAROL);
      const carolViews = await rows('select id from documents where id = $1', [NOTES]);
      const carolEdits = await rows(`update documents set content = 'c' where id = $1 returning id`, [NOTES]);
      await actAs('superuser');
      const afterView = await rows('select viewer_ids, editor_ids from documents where id = $1', [NOTES]);
      await actAs(ALICE);
      await rows(`update document_shares set permission = 'edit' where document_id = $1 and user_id = $2`, [
        NOTES,
        CAROL,
      ]);
      await actAs(CAROL);
      const carolEditsNow = await rows(`update documents set content = 'c' where id = $1 returning id`, [
        NOTES,
      ]);
      await actAs('superuser');
      const afterEdit = await rows('select viewer_ids, editor_ids from documents where id = $1', [NOTES]);
      await actAs(ALICE);
      await rows('delete from document_shares where document_id = $1', [NOTES]);
      const forgeInsert = await attempt(
        `insert into documents (tenant_id, title, viewer_ids) values ($1, 'x', array[$2::uuid])`,
        [ACME, BOB],
      );
      const forgeUpdate = await attempt('update documents set editor_ids = array[$1::uuid] where id = $2', [
        CAROL,
        NOTES,
      ]);
      await actAs(CAROL);
      const carolAfterRevoke = await rows('select id from documents where id = $1', [NOTES]);
      await actAs('service');
      await rows('update documents set viewer_ids = array[$1::uuid] where id = $2', [BOB, NOTES]);
      await actAs('superuser');
      const afterService = await rows('select viewer_ids, editor_ids from documents where id = $1', [NOTES]);
      return {
        carolViews: carolViews.length,
        carolEdits: carolEdits.length,
        afterView,
        carolEditsNow: carolEditsNow.length,
        afterEdit,
        forgeInsert: forgeInsert.code,
        forgeUpdate: forgeUpdate.code,
        carolAfterRevoke,
        afterService,
      };
    });
    expect(seen).toEqual({
      carolViews: 1,
      carolEdits: 0,
      afterView: [{ viewer_ids: [CAROL], editor_ids: [] }],
      carolEditsNow: 1,
      afterEdit: [{ viewer_ids: [CAROL], editor_ids: [CAROL] }],
      forgeInsert: '42501',
      forgeUpdate: '42501',
      carolAfterRevoke: [],
      afterService: [{ viewer_ids: [], editor_ids: [] }],
    });
  });

  it('a member who leaves loses their shares; tenants and users can still be deleted', async () => {
    const seen = await tx(async () => {
      await actAs(ALICE);
      await rows('delete from tenant_memberships where tenant_id = $1 and user_id = $2', [ACME, CAROL]);
      await actAs('superuser');
      const roadmap = await rows('select viewer_ids, editor_ids from documents where id = $1', [ROADMAP]);
      const shares = await rows('select user_id from document_shares where document_id = $1', [ROADMAP]);
      await actAs('service');
      const profile = await attempt('delete from profiles where id = $1', [BOB]);
      await rows('delete from posts where author_id = $1', [DAVE]);
      const dave = await attempt('delete from profiles where id = $1', [DAVE]);
      const tenant = await attempt('delete from tenants where id = $1', [ACME]);
      return { roadmap, shares, profile: profile.code, dave: dave.code, tenant: tenant.code };
    });
    expect(seen).toEqual({
      roadmap: [{ viewer_ids: [DAVE], editor_ids: [DAVE] }],
      shares: [{ user_id: DAVE }],
      // bob still authors Globex posts: posts.author_id keeps the profile.
      profile: '23503',
      dave: undefined,
      tenant: undefined,
    });
  });

  it('a document shared later does not make its earlier versions visible', async () => {
    const seen = await tx(async () => {
      await actAs('superuser');
      const [before] = await rows('select to_jsonb(d) as v from documents d where id = $1', [NOTES]);
      await actAs(ALICE);
      await rows(`insert into document_shares (document_id, user_id, permission) values ($1, $2, 'view')`, [
        NOTES,
        CAROL,
      ]);
      await actAs('superuser');
      const [after] = await rows('select to_jsonb(d) as v from documents d where id = $1', [NOTES]);
      await actAs(CAROL);
      return {
        before: await versionVisible('documents', before?.v),
        after: await versionVisible('documents', after?.v),
      };
    });
    expect(seen).toEqual({ before: false, after: true });
  });

  it('a share row’s earlier versions stay hidden from a later owner of the document', async () => {
    const seen = await tx(async () => {
      await actAs('superuser');
      const [before] = await rows(
        'select to_jsonb(s) as v from document_shares s where document_id = $1 and user_id = $2',
        [ROADMAP, CAROL],
      );
      // A user cannot give a document away (the new row would not be theirs); service_role can.
      await actAs('service');
      await rows('update documents set owner_id = $1 where id = $2', [DAVE, ROADMAP]);
      await actAs('superuser');
      const [after] = await rows(
        'select to_jsonb(s) as v from document_shares s where document_id = $1 and user_id = $2',
        [ROADMAP, CAROL],
      );
      await actAs(DAVE);
      const old = await versionVisible('document_shares', before?.v);
      const current = await versionVisible('document_shares', after?.v);
      await actAs(ALICE);
      const aliceNow = await versionVisible('document_shares', after?.v);
      return { old, current, aliceNow };
    });
    expect(seen).toEqual({ old: false, current: true, aliceNow: false });
  });

  it('only membership-based SELECT policies read other tables (the documented limit)', async () => {
    // What each SELECT policy depends on besides its own table and auth.*: a dependency on
    // another table means the visibility of a row's earlier versions can change later.
    const deps = await rows(
      `select p.polrelid::regclass::text as "table", p.polname as policy,
              coalesce(array_agg(distinct coalesce(r.oid::regclass::text, f.oid::regprocedure::text))
                filter (where r.oid is not null or f.oid is not null), '{}') as depends_on
         from pg_policy p
         join pg_class c on c.oid = p.polrelid and c.relnamespace = 'public'::regnamespace
         left join pg_depend d on d.classid = 'pg_policy'::regclass and d.objid = p.oid
         left join pg_class r on d.refclassid = 'pg_class'::regclass and r.oid = d.refobjid and r.oid <> p.polrelid
         left join pg_proc f on d.refclassid = 'pg_proc'::regclass and f.oid = d.refobjid
           and f.pronamespace <> 'auth'::regnamespace
        where p.polcmd in ('r', '*')
        group by 1, 2 order by 1, 2`,
    );
    expect(deps).toEqual([
      { table: 'document_shares', policy: 'document_shares_select_owner_or_grantee', depends_on: [] },
      { table: 'documents', policy: 'documents_select_owner_or_shared', depends_on: [] },
      { table: 'posts', policy: 'posts_select_member', depends_on: ['app.member_tenant_ids()'] },
      { table: 'posts', policy: 'posts_select_published', depends_on: [] },
      {
        table: 'posts',
        policy: 'posts_select_trash',
        depends_on: ['app.editor_tenant_ids()', 'app.member_tenant_ids()'],
      },
      { table: 'profile_private', policy: 'profile_private_select_self', depends_on: [] },
      {
        table: 'profiles',
        policy: 'profiles_select_self_or_colleague',
        depends_on: ['app.member_tenant_ids()', 'tenant_memberships'],
      },
      { table: 'projects', policy: 'projects_select_member', depends_on: ['app.member_tenant_ids()'] },
      {
        table: 'tenant_memberships',
        policy: 'tenant_memberships_select_member_or_invitee',
        depends_on: ['app.member_tenant_ids()'],
      },
      { table: 'tenants', policy: 'tenants_select_member', depends_on: ['app.member_tenant_ids()'] },
      { table: 'type_samples', policy: 'type_samples_all_authenticated', depends_on: [] },
    ]);
  });
});
