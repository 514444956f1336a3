import { data, Operator } from '@sluice/proto';
import { Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectRejection } from './expect-rejection';
import { ACME, type DataClient, GLOBEX, startStack, type TestStack, USERS } from './helpers';
import { cond, eq, records, row, type SelectReq, V } from './wire-values';

const DOC_ROADMAP = 'd0000000-0000-0000-0000-000000000001'; // alice's, shared: carol view, dave edit
const DOC_NOTES = 'd0000000-0000-0000-0000-000000000002'; // alice's, not shared
const DOC_BUDGET = 'd0000000-0000-0000-0000-000000000003'; // bob's, not shared

let stack: TestStack;
let alice: DataClient;
let bob: DataClient;
let carol: DataClient;
let dave: DataClient;
let service: DataClient;
let anon: DataClient;

beforeAll(async () => {
  stack = await startStack();
  alice = stack.client(await stack.token('alice'));
  bob = stack.client(await stack.token('bob'));
  carol = stack.client(await stack.token('carol'));
  dave = stack.client(await stack.token('dave'));
  service = stack.client(await stack.token('service'));
  anon = stack.client();
});
afterAll(async () => {
  await stack?.close();
});

async function selectAll(client: DataClient, table: string, req: SelectReq = {}) {
  const res = await client.select({ table, limit: 1000, order: [{ column: 'id' }], ...req });
  return records(res.result);
}

async function streamAll(client: DataClient, table: string, req: SelectReq = {}) {
  const rows: Record<string, unknown>[] = [];
  let columns: string[] = [];
  for await (const msg of client.selectStream({
    query: { table, order: [{ column: 'id' }], ...req },
    chunkSize: 3,
  })) {
    if (msg.columns.length > 0) columns = msg.columns.map((c) => c.name);
    rows.push(...records({ columns: columns.map((name) => ({ name, type: '' })), rows: msg.rows }));
  }
  return rows;
}

/** Every row of a table as the service role sees it: the ground truth for "nothing changed". */
function snapshot(table: 'posts' | 'documents' | 'document_shares' | 'type_samples') {
  const order =
    table === 'document_shares' ? [{ column: 'document_id' }, { column: 'user_id' }] : [{ column: 'id' }];
  return selectAll(service, table, { order });
}

const ids = (rows: Record<string, unknown>[]) => rows.map((r) => r.id);

describe('reads are confined to the caller’s tenants (Select and SelectStream)', () => {
  // Admins and editors also see their tenant's soft-deleted posts (posts_select_trash).
  const acmeAll = Array.from({ length: 10 }, (_, i) => BigInt(i + 1));
  const globexAll = Array.from({ length: 10 }, (_, i) => BigInt(i + 11));

  it('alice sees only Acme posts, and nothing of Globex even when asking for it', async () => {
    const posts = await selectAll(alice, 'posts', { columns: ['id', 'tenant_id'] });
    expect(ids(posts)).toEqual(acmeAll);
    expect(new Set(posts.map((p) => p.tenant_id))).toEqual(new Set([ACME]));
    expect(await selectAll(alice, 'posts', { filter: eq('tenant_id', V.str(GLOBEX)) })).toEqual([]);
    expect(await selectAll(alice, 'posts', { filter: eq('id', V.int(11)) })).toEqual([]);
    const count = await alice.select({ table: 'posts', count: data.CountMode.COUNT_MODE_EXACT, limit: 1 });
    expect(count.count).toBe(10n);
  });

  it('bob sees only Globex posts', async () => {
    const posts = await selectAll(bob, 'posts', { columns: ['id', 'tenant_id'] });
    expect(ids(posts)).toEqual(globexAll);
    expect(new Set(posts.map((p) => p.tenant_id))).toEqual(new Set([GLOBEX]));
  });

  it('SelectStream applies the same policies', async () => {
    const posts = await streamAll(alice, 'posts', { columns: ['id', 'tenant_id'] });
    expect(ids(posts)).toEqual(acmeAll);
    // A viewer sees only the live ones.
    expect(ids(await streamAll(carol, 'posts', { columns: ['id'] }))).toEqual([
      1n,
      2n,
      3n,
      4n,
      5n,
      6n,
      9n,
      10n,
    ]);
    expect(await streamAll(alice, 'posts', { filter: eq('tenant_id', V.str(GLOBEX)) })).toEqual([]);
    expect(ids(await streamAll(alice, 'documents', { columns: ['id'] }))).toEqual([DOC_ROADMAP, DOC_NOTES]);
    expect(ids(await streamAll(anon, 'posts', { columns: ['id'] }))).toEqual([
      1n,
      2n,
      5n,
      9n,
      11n,
      12n,
      15n,
      19n,
    ]);
  });

  it('other tenants, memberships and profiles stay hidden', async () => {
    expect(ids(await selectAll(alice, 'tenants'))).toEqual([ACME]);
    const members = await selectAll(alice, 'tenant_memberships', { order: [{ column: 'user_id' }] });
    expect(members.map((m) => m.user_id)).toEqual([USERS.alice, USERS.carol, USERS.dave]);
    expect(ids(await selectAll(alice, 'profiles'))).toEqual([USERS.alice, USERS.carol, USERS.dave]);
    expect(ids(await selectAll(bob, 'profiles'))).toEqual([USERS.bob]);
  });
});

describe('writes into another tenant are refused and change nothing', () => {
  it('Insert of a Globex post by alice is PERMISSION_DENIED', async () => {
    const before = await snapshot('posts');
    await expectRejection(
      alice.insert({
        table: 'posts',
        columns: ['tenant_id', 'title'],
        rows: [row(V.str(GLOBEX), V.str('planted by alice'))],
        returning: ['id'],
      }),
      { code: Status.PERMISSION_DENIED, reason: 'SLUICE_RLS_VIOLATION' },
    );
    // Forging the author does not help either.
    await expectRejection(
      alice.insert({
        table: 'posts',
        columns: ['tenant_id', 'title', 'author_id'],
        rows: [row(V.str(GLOBEX), V.str('planted as bob'), V.str(USERS.bob))],
      }),
      { code: Status.PERMISSION_DENIED, reason: 'SLUICE_RLS_VIOLATION' },
    );
    expect(await snapshot('posts')).toEqual(before);
  });

  it('Update of a Globex post by alice affects 0 rows', async () => {
    const before = await snapshot('posts');
    const res = await alice.update({
      table: 'posts',
      set: [{ column: 'title', value: V.str('defaced') }],
      filter: eq('id', V.int(11)),
      returning: ['id'],
    });
    expect(res.affected).toBe(0n);
    expect(res.result?.rows).toEqual([]);
    // Also through a filter matching the whole other tenant.
    const all = await alice.update({
      table: 'posts',
      set: [{ column: 'status', value: V.str('archived') }],
      filter: eq('tenant_id', V.str(GLOBEX)),
    });
    expect(all.affected).toBe(0n);
    expect(await snapshot('posts')).toEqual(before);
  });

  it('moving an Acme post into Globex is refused by the trigger (FAILED_PRECONDITION)', async () => {
    const before = await snapshot('posts');
    await expectRejection(
      alice.update({
        table: 'posts',
        set: [{ column: 'tenant_id', value: V.str(GLOBEX) }],
        filter: eq('id', V.int(1)),
      }),
      { code: Status.FAILED_PRECONDITION, reason: 'SLUICE_CONSTRAINT_VIOLATION' },
    );
    expect(await snapshot('posts')).toEqual(before);
  });

  it('Delete of a Globex post by alice affects 0 rows', async () => {
    const before = await snapshot('posts');
    const res = await alice.delete({ table: 'posts', filter: eq('id', V.int(12)), returning: ['id'] });
    expect(res.affected).toBe(0n);
    const all = await alice.delete({ table: 'posts', filter: eq('tenant_id', V.str(GLOBEX)) });
    expect(all.affected).toBe(0n);
    expect(await snapshot('posts')).toEqual(before);
  });

  it('Call of create_post into Globex is PERMISSION_DENIED', async () => {
    const before = await snapshot('posts');
    await expectRejection(
      alice.call({
        function: 'create_post',
        args: [
          { name: 'p_tenant_id', value: V.str(GLOBEX) },
          { name: 'p_title', value: V.str('via rpc') },
        ],
      }),
      { code: Status.PERMISSION_DENIED, reason: 'SLUICE_RLS_VIOLATION' },
    );
    expect(await snapshot('posts')).toEqual(before);
  });

  it('functions see only what the caller may see', async () => {
    const count = (client: DataClient, tenant: string) =>
      client
        .call({ function: 'tenant_post_count', args: [{ name: 'p_tenant_id', value: V.str(tenant) }] })
        .then((r) => records(r.result)[0]?.tenant_post_count);
    expect(await count(alice, GLOBEX)).toBe(0n);
    expect(await count(bob, GLOBEX)).toBe(8n);
    expect(await count(anon, ACME)).toBe(4n);
    const found = await alice.call({
      function: 'search_posts',
      args: [{ name: 'q', value: V.str('campus') }],
    });
    expect(records(found.result)).toEqual([]);
    const tenants = await bob.call({ function: 'my_tenants' });
    expect(records(tenants.result).map((t) => t.slug)).toEqual(['globex']);
  });

  it('a Transaction whose second operation inserts into Globex rolls back entirely', async () => {
    const before = await snapshot('posts');
    const rejection = await expectRejection(
      alice.transaction({
        operations: [
          {
            kind: {
              $case: 'update',
              value: {
                table: 'posts',
                set: [{ column: 'title', value: V.str('changed in tx') }],
                filter: eq('id', V.int(1)),
              },
            },
          },
          {
            kind: {
              $case: 'insert',
              value: {
                table: 'posts',
                columns: ['tenant_id', 'title'],
                rows: [row(V.str(GLOBEX), V.str('x'))],
              },
            },
          },
        ],
      }),
      { code: Status.PERMISSION_DENIED, reason: 'SLUICE_RLS_VIOLATION' },
    );
    expect(rejection.metadata.operation_index).toBe('1');
    expect(await snapshot('posts')).toEqual(before);
  });

  it('a Transaction whose second operation updates a Globex post changes only the Acme post', async () => {
    const before = await snapshot('posts');
    const res = await alice.transaction({
      operations: [
        {
          kind: {
            $case: 'update',
            value: {
              table: 'posts',
              set: [{ column: 'body', value: V.str('edited in tx') }],
              filter: eq('id', V.int(10)),
            },
          },
        },
        {
          kind: {
            $case: 'update',
            value: {
              table: 'posts',
              set: [{ column: 'body', value: V.str('hijacked') }],
              filter: eq('id', V.int(13)),
            },
          },
        },
        { kind: { $case: 'delete', value: { table: 'posts', filter: eq('id', V.int(14)) } } },
      ],
    });
    expect(res.committed).toBe(true);
    const affected = res.results.map((r) =>
      r.kind && 'affected' in r.kind.value ? r.kind.value.affected : -1n,
    );
    expect(affected).toEqual([1n, 0n, 0n]);
    const after = await snapshot('posts');
    expect(after.filter((p) => p.id !== 10n)).toEqual(before.filter((p) => p.id !== 10n));
    expect(after.find((p) => p.id === 10n)?.body).toBe('edited in tx');
  });
});

describe('roles inside a tenant', () => {
  it('carol (viewer) cannot insert, update or delete posts', async () => {
    const before = await snapshot('posts');
    await expectRejection(
      carol.insert({
        table: 'posts',
        columns: ['tenant_id', 'title'],
        rows: [row(V.str(ACME), V.str('by carol'))],
      }),
      { code: Status.PERMISSION_DENIED, reason: 'SLUICE_RLS_VIOLATION' },
    );
    const upd = await carol.update({
      table: 'posts',
      set: [{ column: 'title', value: V.str('carol was here') }],
      filter: eq('id', V.int(1)),
    });
    expect(upd.affected).toBe(0n);
    const del = await carol.delete({ table: 'posts', filter: eq('id', V.int(2)) });
    expect(del.affected).toBe(0n);
    expect(await snapshot('posts')).toEqual(before);
    // She still reads them.
    expect((await selectAll(carol, 'posts', { columns: ['id'] })).length).toBe(8);
  });

  it('dave (editor) inserts into Acme as himself', async () => {
    const res = await dave.insert({
      table: 'posts',
      columns: ['tenant_id', 'title'],
      rows: [row(V.str(ACME), V.str('by dave'))],
      returning: ['id', 'tenant_id', 'author_id', 'created_by', 'status'],
    });
    expect(res.affected).toBe(1n);
    const [inserted] = records(res.result);
    expect(inserted).toMatchObject({
      tenant_id: ACME,
      author_id: USERS.dave,
      created_by: USERS.dave,
      status: 'draft',
    });
    const seen = await selectAll(service, 'posts', { filter: eq('id', V.int(inserted?.id as bigint)) });
    expect(seen.map((p) => p.title)).toEqual(['by dave']);
    // Bob does not see it.
    expect(await selectAll(bob, 'posts', { filter: eq('id', V.int(inserted?.id as bigint)) })).toEqual([]);
  });
});

describe('document shares grant exactly what they say', () => {
  it('each user sees their own and shared documents only', async () => {
    expect(ids(await selectAll(alice, 'documents', { columns: ['id'] }))).toEqual([DOC_ROADMAP, DOC_NOTES]);
    expect(ids(await selectAll(carol, 'documents', { columns: ['id'] }))).toEqual([DOC_ROADMAP]);
    expect(ids(await selectAll(dave, 'documents', { columns: ['id'] }))).toEqual([DOC_ROADMAP]);
    expect(ids(await selectAll(bob, 'documents', { columns: ['id'] }))).toEqual([DOC_BUDGET]);
    expect(await selectAll(dave, 'documents', { filter: eq('id', V.str(DOC_NOTES)) })).toEqual([]);
  });

  it('carol (view share) cannot edit or delete the shared document', async () => {
    const before = await snapshot('documents');
    const upd = await carol.update({
      table: 'documents',
      set: [{ column: 'content', value: V.str('carol edit') }],
      filter: eq('id', V.str(DOC_ROADMAP)),
    });
    expect(upd.affected).toBe(0n);
    const del = await carol.delete({ table: 'documents', filter: eq('id', V.str(DOC_ROADMAP)) });
    expect(del.affected).toBe(0n);
    expect(await snapshot('documents')).toEqual(before);
  });

  it('dave (edit share) edits but cannot delete, take ownership or reshare', async () => {
    const upd = await dave.update({
      table: 'documents',
      set: [{ column: 'content', value: V.str('edited by dave') }],
      filter: eq('id', V.str(DOC_ROADMAP)),
      returning: ['content', 'owner_id'],
    });
    expect(upd.affected).toBe(1n);
    expect(records(upd.result)).toEqual([{ content: 'edited by dave', owner_id: USERS.alice }]);

    const before = await snapshot('documents');
    const sharesBefore = await snapshot('document_shares');
    const del = await dave.delete({ table: 'documents', filter: eq('id', V.str(DOC_ROADMAP)) });
    expect(del.affected).toBe(0n);
    await expectRejection(
      dave.update({
        table: 'documents',
        set: [{ column: 'owner_id', value: V.str(USERS.dave) }],
        filter: eq('id', V.str(DOC_ROADMAP)),
      }),
      { code: Status.PERMISSION_DENIED, reason: 'SLUICE_PERMISSION_DENIED' },
    );
    await expectRejection(
      dave.insert({
        table: 'document_shares',
        columns: ['document_id', 'user_id', 'permission'],
        rows: [row(V.str(DOC_ROADMAP), V.str(USERS.carol), V.str('edit'))],
        onConflict: { action: data.ConflictAction.CONFLICT_ACTION_MERGE, updateColumns: ['permission'] },
      }),
      { code: Status.PERMISSION_DENIED, reason: 'SLUICE_RLS_VIOLATION' },
    );
    // An edit share does not extend to alice's other document.
    const other = await dave.update({
      table: 'documents',
      set: [{ column: 'content', value: V.str('x') }],
      filter: eq('id', V.str(DOC_NOTES)),
    });
    expect(other.affected).toBe(0n);
    expect(await snapshot('documents')).toEqual(before);
    expect(await snapshot('document_shares')).toEqual(sharesBefore);
  });

  it('nobody else reaches alice’s unshared notes', async () => {
    const before = await snapshot('documents');
    for (const client of [bob, carol, dave]) {
      expect(await selectAll(client, 'documents', { filter: eq('id', V.str(DOC_NOTES)) })).toEqual([]);
      const upd = await client.update({
        table: 'documents',
        set: [{ column: 'title', value: V.str('mine now') }],
        filter: eq('id', V.str(DOC_NOTES)),
      });
      expect(upd.affected).toBe(0n);
      expect((await client.delete({ table: 'documents', filter: eq('id', V.str(DOC_NOTES)) })).affected).toBe(
        0n,
      );
    }
    expect(await snapshot('documents')).toEqual(before);
  });
});

describe('anonymous callers', () => {
  it('see only published, live posts', async () => {
    const posts = await selectAll(anon, 'posts', { columns: ['id', 'status', 'deleted_at'] });
    expect(ids(posts)).toEqual([1n, 2n, 5n, 9n, 11n, 12n, 15n, 19n]);
    expect(posts.every((p) => p.status === 'published' && p.deleted_at === null)).toBe(true);
  });

  it('see nothing in documents or type_samples', async () => {
    for (const table of ['documents', 'type_samples', 'document_shares']) {
      await expectRejection(anon.select({ table }), {
        code: Status.PERMISSION_DENIED,
        reason: 'SLUICE_TABLE_NOT_ALLOWED',
      });
    }
    await expectRejection(streamAll(anon, 'documents'), {
      code: Status.PERMISSION_DENIED,
      reason: 'SLUICE_TABLE_NOT_ALLOWED',
    });
  });

  it('cannot write', async () => {
    const before = await snapshot('posts');
    await expectRejection(
      anon.insert({
        table: 'posts',
        columns: ['tenant_id', 'title'],
        rows: [row(V.str(ACME), V.str('anon'))],
      }),
      { code: Status.PERMISSION_DENIED, reason: 'SLUICE_TABLE_NOT_ALLOWED' },
    );
    await expectRejection(
      anon.update({
        table: 'posts',
        set: [{ column: 'title', value: V.str('anon') }],
        filter: eq('id', V.int(1)),
      }),
      { code: Status.PERMISSION_DENIED, reason: 'SLUICE_TABLE_NOT_ALLOWED' },
    );
    await expectRejection(anon.delete({ table: 'posts', filter: eq('id', V.int(1)) }), {
      code: Status.PERMISSION_DENIED,
      reason: 'SLUICE_TABLE_NOT_ALLOWED',
    });
    await expectRejection(
      anon.call({
        function: 'create_post',
        args: [
          { name: 'p_tenant_id', value: V.str(ACME) },
          { name: 'p_title', value: V.str('anon') },
        ],
      }),
      { code: Status.INVALID_ARGUMENT, reason: 'SLUICE_UNKNOWN_FUNCTION' },
    );
    expect(await snapshot('posts')).toEqual(before);
  });
});

describe('service_role', () => {
  it('sees every row of every tenant', async () => {
    const posts = await selectAll(service, 'posts', { columns: ['id'], filter: eq('id', V.int(20)) });
    expect(posts).toEqual([{ id: 20n }]);
    const all = await service.select({ table: 'posts', limit: 1, count: data.CountMode.COUNT_MODE_EXACT });
    expect(all.count).toBeGreaterThanOrEqual(20n); // other tests here insert Acme posts
    const seeded = await selectAll(service, 'posts', {
      columns: ['id'],
      filter: cond('id', Operator.OPERATOR_LTE, V.int(20)),
    });
    expect(ids(seeded)).toEqual(Array.from({ length: 20 }, (_, i) => BigInt(i + 1)));
    expect(ids(await selectAll(service, 'documents', { columns: ['id'] }))).toEqual([
      DOC_ROADMAP,
      DOC_NOTES,
      DOC_BUDGET,
    ]);
    expect(ids(await selectAll(service, 'type_samples', { columns: ['id'] }))).toEqual([1n, 2n]);
    expect(ids(await selectAll(service, 'tenants'))).toEqual([ACME, GLOBEX]);
  });
});
