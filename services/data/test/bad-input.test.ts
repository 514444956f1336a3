import { setTimeout as delay } from 'node:timers/promises';
import { type data, type Filter, Operator } from '@sluice/proto';
import { Status } from 'nice-grpc';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { expectRejection, type Rejection } from './expect-rejection';
import { ACME, type DataClient, startStack, type TestStack, USERS } from './helpers';
import { and, cond, eq, records, row, V } from './wire-values';

// Every case here must fail with the right status, reason and field, and leave every table as it
// was: a superuser fingerprint of all rows is compared after each test.

let stack: TestStack;
let admin: pg.Client;
let anon: DataClient;
let alice: DataClient;
let dave: DataClient;
let service: DataClient;
let fingerprint: string;

const TABLES = [
  'tenants',
  'profiles',
  'tenant_memberships',
  'projects',
  'posts',
  'documents',
  'document_shares',
  'type_samples',
  'secrets',
];

async function snapshot(): Promise<string> {
  const parts = await Promise.all(
    TABLES.map(async (t) => {
      const r = await admin.query<{ h: string }>(
        `select md5(coalesce(string_agg(x::text, ',' order by x::text), '')) as h from public.${t} x`,
      );
      return `${t}:${r.rows[0]?.h}`;
    }),
  );
  return parts.join(' ');
}

/** Expects `code`/`reason` and, when given, a BadRequest violation on `field`. */
async function rejects(
  call: Promise<unknown>,
  code: Status,
  reason?: string,
  field?: string,
): Promise<Rejection> {
  const r = await expectRejection(call, { code, ...(reason ? { reason } : {}) });
  if (field !== undefined) expect(r.fields).toContain(field);
  return r;
}

const filterOn = (column: string, op: Operator, value = V.str('x')): Filter => cond(column, op, value);

beforeAll(async () => {
  stack = await startStack();
  admin = new pg.Client({ connectionString: stack.db.url });
  await admin.connect();
  // A column-level grant: authenticated may read id and note of `secrets`, but not `secret`.
  await admin.query(`
    create table public.secrets (id int primary key, note text, secret text);
    grant select (id, note) on public.secrets to authenticated;
    insert into public.secrets values (1, 'visible', 'hidden');
  `);
  [anon, alice, dave, service] = [
    stack.client(),
    stack.client(await stack.token('alice')),
    stack.client(await stack.token('dave')),
    stack.client(await stack.token('service')),
  ];
  // The DDL trigger makes the service reload its catalog; wait until it shows the new table.
  for (let i = 0; ; i++) {
    const schema = await alice.describeSchema({});
    if (schema.tables.some((t) => t.name === 'secrets')) break;
    if (i > 100) throw new Error('catalog did not reload');
    await delay(50);
  }
  fingerprint = await snapshot();
});

afterEach(async () => {
  expect(await snapshot()).toBe(fingerprint);
});

afterAll(async () => {
  await admin?.end();
  await stack?.close();
});

describe('unknown names', () => {
  it('unknown table', async () => {
    await rejects(alice.select({ table: 'nope' }), Status.INVALID_ARGUMENT, 'SLUICE_UNKNOWN_TABLE', 'table');
  });

  it('unknown column, in columns, filter, order, returning, set', async () => {
    await rejects(
      alice.select({ table: 'posts', columns: ['nope'] }),
      Status.INVALID_ARGUMENT,
      'SLUICE_UNKNOWN_COLUMN',
      'columns[0]',
    );
    await rejects(
      alice.select({ table: 'posts', filter: eq('nope', V.int(1)) }),
      Status.INVALID_ARGUMENT,
      'SLUICE_UNKNOWN_COLUMN',
      'filter.condition.column',
    );
    await rejects(
      alice.update({
        table: 'posts',
        set: [{ column: 'nope', value: V.str('x') }],
        filter: eq('id', V.int(1)),
      }),
      Status.INVALID_ARGUMENT,
      'SLUICE_UNKNOWN_COLUMN',
      'set[0].column',
    );
  });

  it('unknown function', async () => {
    await rejects(
      alice.call({ function: 'nope' }),
      Status.INVALID_ARGUMENT,
      'SLUICE_UNKNOWN_FUNCTION',
      'function',
    );
  });

  it('unknown, unspecified and out-of-range operators', async () => {
    for (const op of [Operator.OPERATOR_UNSPECIFIED, 99 as Operator]) {
      await rejects(
        alice.select({ table: 'posts', filter: filterOn('title', op) }),
        Status.INVALID_ARGUMENT,
        'SLUICE_UNKNOWN_OPERATOR',
        'filter.condition.op',
      );
    }
  });

  it('unknown or unexposed schema', async () => {
    for (const schema of ['nope', 'app', 'pg_catalog', 'information_schema']) {
      await rejects(
        alice.select({ schema, table: 'posts' }),
        Status.INVALID_ARGUMENT,
        'SLUICE_UNKNOWN_TABLE',
        'table',
      );
    }
    // app.is_admin exists and authenticated may execute it, but app is not an exposed schema.
    await rejects(
      alice.call({ schema: 'app', function: 'is_admin', args: [{ name: 'tenant', value: V.str(ACME) }] }),
      Status.INVALID_ARGUMENT,
      'SLUICE_UNKNOWN_FUNCTION',
      'function',
    );
  });
});

describe('wrong values', () => {
  it('a value of the wrong kind is rejected before the database', async () => {
    await rejects(
      alice.select({ table: 'posts', filter: eq('id', V.bool(true)) }),
      Status.INVALID_ARGUMENT,
      'SLUICE_WRONG_TYPE',
      'filter.condition.value',
    );
    await rejects(
      dave.insert({ table: 'posts', columns: ['tenant_id', 'title'], rows: [row(V.int(5), V.str('t'))] }),
      Status.INVALID_ARGUMENT,
      'SLUICE_WRONG_TYPE',
      'rows[0].values[0]',
    );
  });

  it('a string PostgreSQL cannot parse for the type is INVALID_ARGUMENT', async () => {
    await rejects(
      alice.select({ table: 'posts', filter: eq('id', V.str('abc')) }),
      Status.INVALID_ARGUMENT,
      'SLUICE_INVALID_VALUE',
    );
    await rejects(
      alice.select({ table: 'posts', filter: eq('tenant_id', V.str('not-a-uuid')) }),
      Status.INVALID_ARGUMENT,
      'SLUICE_INVALID_VALUE',
    );
  });

  it('LIKE on a non-text column', async () => {
    await rejects(
      alice.select({ table: 'posts', filter: filterOn('view_count', Operator.OPERATOR_LIKE, V.str('1%')) }),
      Status.INVALID_ARGUMENT,
      'SLUICE_OPERATOR_NOT_APPLICABLE',
      'filter.condition.op',
    );
  });
});

describe('injection attempts in identifiers', () => {
  const evilTable = 'posts; drop table posts --';
  const evilColumn = 'id" from posts; --';

  it('table and schema names', async () => {
    await rejects(
      alice.select({ table: evilTable }),
      Status.INVALID_ARGUMENT,
      'SLUICE_UNKNOWN_TABLE',
      'table',
    );
    await rejects(
      alice.select({ schema: 'public"; drop table posts; --', table: 'posts' }),
      Status.INVALID_ARGUMENT,
      'SLUICE_UNKNOWN_TABLE',
      'table',
    );
    await rejects(
      service.delete({ table: evilTable, filter: and() }),
      Status.INVALID_ARGUMENT,
      'SLUICE_UNKNOWN_TABLE',
      'table',
    );
  });

  it('column names in columns, filter, order and returning', async () => {
    await rejects(
      alice.select({ table: 'posts', columns: [evilColumn] }),
      Status.INVALID_ARGUMENT,
      'SLUICE_UNKNOWN_COLUMN',
      'columns[0]',
    );
    await rejects(
      alice.select({ table: 'posts', filter: eq(evilColumn, V.int(1)) }),
      Status.INVALID_ARGUMENT,
      'SLUICE_UNKNOWN_COLUMN',
      'filter.condition.column',
    );
    await rejects(
      alice.select({ table: 'posts', order: [{ column: evilColumn }] }),
      Status.INVALID_ARGUMENT,
      'SLUICE_UNKNOWN_COLUMN',
      'order[0].column',
    );
    await rejects(
      dave.insert({
        table: 'posts',
        columns: ['tenant_id', 'title'],
        rows: [row(V.str(ACME), V.str('never inserted'))],
        returning: ['id', evilColumn],
      }),
      Status.INVALID_ARGUMENT,
      'SLUICE_UNKNOWN_COLUMN',
      'returning[1]',
    );
  });

  it('function and argument names', async () => {
    await rejects(
      alice.call({ function: 'fail_with(msg => null); drop table posts; --' }),
      Status.INVALID_ARGUMENT,
      'SLUICE_UNKNOWN_FUNCTION',
      'function',
    );
    await rejects(
      alice.call({
        function: 'tenant_post_count',
        args: [{ name: 'p_tenant_id" => null); drop table posts; --', value: V.str(ACME) }],
      }),
      Status.INVALID_ARGUMENT,
      'SLUICE_ARGUMENTS_MISMATCH',
      'args',
    );
  });
});

describe('injection attempts in values', () => {
  const evil = "'; drop table posts; --";

  it('are compared as data', async () => {
    const res = await alice.select({ table: 'posts', columns: ['id'], filter: eq('title', V.str(evil)) });
    expect(res.result?.rows).toEqual([]);
    const like = await alice.select({
      table: 'posts',
      columns: ['id'],
      filter: filterOn('title', Operator.OPERATOR_LIKE, V.str(`%${evil}%`)),
    });
    expect(like.result?.rows).toEqual([]);
  });

  it('are stored verbatim (dry run, so nothing stays)', async () => {
    const res = await dave.transaction({
      dryRun: true,
      operations: [
        {
          kind: {
            $case: 'insert',
            value: {
              schema: '',
              table: 'posts',
              columns: ['tenant_id', 'title', 'body'],
              rows: [row(V.str(ACME), V.str(evil), V.str('x"); drop table posts; --'))],
              returning: ['title', 'body'],
              onConflict: undefined,
            },
          },
        },
        {
          kind: {
            $case: 'select',
            value: {
              schema: '',
              table: 'posts',
              columns: ['title'],
              filter: eq('title', V.str(evil)),
              order: [],
              limit: 0,
              offset: 0,
              pageToken: '',
              count: 0,
            },
          },
        },
      ],
    });
    expect(res.committed).toBe(false);
    const [inserted, selected] = res.results.map((r) => r.kind);
    expect(inserted?.$case === 'insert' && records(inserted.value.result)).toEqual([
      { title: evil, body: 'x"); drop table posts; --' },
    ]);
    expect(selected?.$case === 'select' && records(selected.value.result)).toEqual([{ title: evil }]);
  });
});

describe('empty requests', () => {
  it('no table', async () => {
    await rejects(alice.select({}), Status.INVALID_ARGUMENT, 'SLUICE_TABLE_REQUIRED', 'table');
    await rejects(alice.insert({}), Status.INVALID_ARGUMENT, 'SLUICE_TABLE_REQUIRED', 'table');
    await rejects(alice.call({}), Status.INVALID_ARGUMENT, 'SLUICE_FUNCTION_REQUIRED', 'function');
  });

  it('insert with no rows', async () => {
    await rejects(
      dave.insert({ table: 'posts', columns: ['title'] }),
      Status.INVALID_ARGUMENT,
      'SLUICE_ROWS_REQUIRED',
      'rows',
    );
  });

  it('update with no set', async () => {
    await rejects(
      alice.update({ table: 'posts', filter: eq('id', V.int(1)) }),
      Status.INVALID_ARGUMENT,
      'SLUICE_SET_REQUIRED',
      'set',
    );
  });

  it('empty transaction and empty operation', async () => {
    await rejects(alice.transaction({}), Status.INVALID_ARGUMENT, 'SLUICE_OPERATIONS_REQUIRED', 'operations');
    await rejects(
      alice.transaction({ operations: [{ kind: undefined }] }),
      Status.INVALID_ARGUMENT,
      'SLUICE_EMPTY_OPERATION',
      'operations[0]',
    );
  });

  it('empty filter node', async () => {
    await rejects(
      alice.select({ table: 'posts', filter: { kind: undefined } }),
      Status.INVALID_ARGUMENT,
      'SLUICE_EMPTY_FILTER',
      'filter',
    );
    await rejects(
      alice.delete({ table: 'posts', filter: and(eq('id', V.int(1)), { kind: undefined }) }),
      Status.INVALID_ARGUMENT,
      'SLUICE_EMPTY_FILTER',
      'filter.and.filters[1]',
    );
  });

  it('update and delete without a filter', async () => {
    await rejects(
      service.update({ table: 'posts', set: [{ column: 'title', value: V.str('x') }] }),
      Status.INVALID_ARGUMENT,
      'SLUICE_FILTER_REQUIRED',
      'filter',
    );
    await rejects(
      service.delete({ table: 'posts' }),
      Status.INVALID_ARGUMENT,
      'SLUICE_FILTER_REQUIRED',
      'filter',
    );
  });
});

describe('privileges', () => {
  it('anon filtering a table it has no grants on', async () => {
    await rejects(
      anon.select({ table: 'documents', filter: eq('title', V.str('x')) }),
      Status.PERMISSION_DENIED,
      'SLUICE_TABLE_NOT_ALLOWED',
      'table',
    );
  });

  it('filtering, ordering or returning a column the role cannot read', async () => {
    const ok = await alice.select({ table: 'secrets' });
    expect(records(ok.result)).toEqual([{ id: 1n, note: 'visible' }]);
    await rejects(
      alice.select({ table: 'secrets', columns: ['id'], filter: eq('secret', V.str('hidden')) }),
      Status.PERMISSION_DENIED,
      'SLUICE_COLUMN_NOT_ALLOWED',
      'filter.condition.column',
    );
    await rejects(
      alice.select({ table: 'secrets', columns: ['id'], order: [{ column: 'secret' }] }),
      Status.PERMISSION_DENIED,
      'SLUICE_COLUMN_NOT_ALLOWED',
      'order[0].column',
    );
    await rejects(
      alice.select({ table: 'secrets', columns: ['secret'] }),
      Status.PERMISSION_DENIED,
      'SLUICE_COLUMN_NOT_ALLOWED',
      'columns[0]',
    );
    await rejects(
      alice.delete({ table: 'secrets', filter: and() }),
      Status.PERMISSION_DENIED,
      'SLUICE_TABLE_NOT_ALLOWED',
      'table',
    );
  });

  it('inserting into a generated column', async () => {
    await rejects(
      dave.insert({
        table: 'posts',
        columns: ['tenant_id', 'title', 'search'],
        rows: [row(V.str(ACME), V.str('t'), V.str('x'))],
      }),
      Status.INVALID_ARGUMENT,
      'SLUICE_COLUMN_NOT_WRITABLE',
      'columns[2]',
    );
  });
});

describe('limits', () => {
  it('IN with more than 10,000 values', async () => {
    const values = Array.from({ length: 10_001 }, (_, i) => V.int(i));
    await rejects(
      alice.select({ table: 'posts', filter: cond('id', Operator.OPERATOR_IN, undefined, values) }),
      Status.INVALID_ARGUMENT,
      'SLUICE_TOO_MANY_VALUES',
      'filter.condition.values',
    );
    // 10,000 is still fine.
    const ok = await alice.select({
      table: 'posts',
      columns: ['id'],
      filter: cond('id', Operator.OPERATOR_IN, undefined, values.slice(0, 10_000)),
    });
    // alice, an admin of Acme, sees its 10 posts, soft-deleted ones included.
    expect(ok.result?.rows.length).toBe(10);
  });

  it('a filter nested deeper than 32 levels', async () => {
    let filter: Filter = eq('id', V.int(1));
    for (let i = 0; i < 40; i++) filter = { kind: { $case: 'not', value: filter } };
    const r = await rejects(
      alice.select({ table: 'posts', filter }),
      Status.INVALID_ARGUMENT,
      'SLUICE_FILTER_TOO_COMPLEX',
    );
    expect(r.fields[0]).toMatch(/^filter(\.not)+$/);
    // 32 levels still compile.
    filter = eq('id', V.int(1));
    for (let i = 0; i < 32; i++) filter = { kind: { $case: 'not', value: filter } };
    await expect(alice.select({ table: 'posts', filter })).resolves.toBeDefined();
  });

  it('a message bigger than MAX_MESSAGE_BYTES', async () => {
    const small = await startStack({ MAX_MESSAGE_BYTES: '65536' });
    try {
      const client = small.client(await small.token('dave'));
      const request: data.InsertRequest = {
        schema: '',
        table: 'posts',
        columns: ['tenant_id', 'title', 'body'],
        rows: [row(V.str(ACME), V.str('big'), V.str('x'.repeat(100_000)))],
        returning: [],
        onConflict: undefined,
      };
      await rejects(client.insert(request), Status.RESOURCE_EXHAUSTED);
      const check = new pg.Client({ connectionString: small.db.url });
      await check.connect();
      try {
        const { rows } = await check.query("select count(*)::int as n from public.posts where title = 'big'");
        expect(rows[0].n).toBe(0);
      } finally {
        await check.end();
      }
    } finally {
      await small.close();
    }
  });
});

describe('functions', () => {
  it('missing required argument', async () => {
    await rejects(
      dave.call({ function: 'create_post', args: [{ name: 'p_title', value: V.str('t') }] }),
      Status.INVALID_ARGUMENT,
      'SLUICE_ARGUMENTS_MISMATCH',
      'args',
    );
  });

  it('unknown argument', async () => {
    await rejects(
      alice.call({
        function: 'tenant_post_count',
        args: [
          { name: 'p_tenant_id', value: V.str(ACME) },
          { name: 'p_extra', value: V.int(1) },
        ],
      }),
      Status.INVALID_ARGUMENT,
      'SLUICE_ARGUMENTS_MISMATCH',
      'args',
    );
  });

  it('raise_exception reaches the client as FAILED_PRECONDITION with its message', async () => {
    const r = await rejects(
      alice.call({ function: 'fail_with', args: [{ name: 'msg', value: V.str('the reactor is too hot') }] }),
      Status.FAILED_PRECONDITION,
      'SLUICE_RAISED',
    );
    expect(r.message).toBe('the reactor is too hot');
  });
});

describe('constraint violations', () => {
  it('unique violation is ALREADY_EXISTS', async () => {
    const r = await rejects(
      service.insert({
        table: 'tenants',
        columns: ['name', 'slug'],
        rows: [row(V.str('Acme 2'), V.str('acme'))],
      }),
      Status.ALREADY_EXISTS,
      'SLUICE_UNIQUE_VIOLATION',
    );
    expect(r.metadata.constraint).toBe('tenants_slug_key');
  });

  it('not-null violation is FAILED_PRECONDITION', async () => {
    const r = await rejects(
      service.insert({
        table: 'tenants',
        columns: ['name', 'slug'],
        rows: [row(V.null(), V.str('nameless'))],
      }),
      Status.FAILED_PRECONDITION,
      'SLUICE_NOT_NULL_VIOLATION',
      'name',
    );
    expect(r.metadata.column).toBe('name');
  });

  it('check violation is FAILED_PRECONDITION', async () => {
    const r = await rejects(
      service.update({
        table: 'posts',
        set: [{ column: 'status', value: V.str('bogus') }],
        filter: eq('id', V.int(1)),
      }),
      Status.FAILED_PRECONDITION,
      'SLUICE_CONSTRAINT_VIOLATION',
    );
    expect(r.metadata.constraint).toBe('posts_status_check');
  });

  it('foreign key violation is FAILED_PRECONDITION', async () => {
    const r = await rejects(
      service.insert({
        table: 'posts',
        columns: ['tenant_id', 'author_id', 'title', 'project_id'],
        rows: [
          row(
            V.str(ACME),
            V.str(USERS.alice),
            V.str('orphan'),
            V.str('99999999-9999-9999-9999-999999999999'),
          ),
        ],
      }),
      Status.FAILED_PRECONDITION,
      'SLUICE_CONSTRAINT_VIOLATION',
    );
    expect(r.metadata.constraint).toBe('posts_tenant_id_project_id_fkey');
  });

  it('a failing operation rolls back the whole transaction', async () => {
    const r = await rejects(
      service.transaction({
        operations: [
          {
            kind: {
              $case: 'update',
              value: {
                schema: '',
                table: 'posts',
                set: [{ column: 'title', value: V.str('changed') }],
                filter: eq('id', V.int(2)),
                returning: [],
              },
            },
          },
          {
            kind: {
              $case: 'insert',
              value: {
                schema: '',
                table: 'tenants',
                columns: ['name', 'slug'],
                rows: [row(V.str('dup'), V.str('globex'))],
                returning: [],
                onConflict: undefined,
              },
            },
          },
        ],
      }),
      Status.ALREADY_EXISTS,
      'SLUICE_UNIQUE_VIOLATION',
    );
    expect(r.metadata.operation_index).toBe('1');
  });
});
