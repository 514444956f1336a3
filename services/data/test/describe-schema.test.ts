import type { data } from '@sluice/proto';
import { Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectRejection } from './expect-rejection';
import { startStack, type TestStack } from './helpers';

let stack: TestStack;
let anon: data.DescribeSchemaResponse;
let alice: data.DescribeSchemaResponse;
let service: data.DescribeSchemaResponse;

const table = (r: data.DescribeSchemaResponse, name: string) => r.tables.find((t) => t.name === name);
const column = (t: data.TableInfo | undefined, name: string) => t?.columns.find((c) => c.name === name);
const fn = (r: data.DescribeSchemaResponse, name: string) => r.functions.find((f) => f.name === name);

const APP_TABLES = [
  'document_shares',
  'documents',
  'posts',
  'profile_private',
  'profiles',
  'projects',
  'tenant_memberships',
  'tenants',
  'type_samples',
];

beforeAll(async () => {
  stack = await startStack();
  [anon, alice, service] = await Promise.all([
    stack.client().describeSchema({}),
    stack.client(await stack.token('alice')).describeSchema({}),
    stack.client(await stack.token('service')).describeSchema({}),
  ]);
});

afterAll(async () => {
  await stack?.close();
});

describe('DescribeSchema', () => {
  it('anon sees posts, read-only, and nothing it has no grant on', () => {
    expect(anon.tables.map((t) => t.name)).toEqual(['posts']);
    const posts = table(anon, 'posts');
    expect(posts).toMatchObject({
      schema: 'public',
      canSelect: true,
      canInsert: false,
      canUpdate: false,
      canDelete: false,
      rlsEnabled: true,
      isView: false,
    });
    expect(posts?.columns.every((c) => c.canSelect && !c.canInsert && !c.canUpdate)).toBe(true);
    expect(table(anon, 'documents')).toBeUndefined();
    // Only the function granted to anon.
    expect(anon.functions.map((f) => f.name)).toEqual(['tenant_post_count']);
  });

  it('authenticated and service_role see every application table', () => {
    expect(alice.tables.map((t) => t.name).sort()).toEqual(APP_TABLES);
    expect(service.tables.map((t) => t.name).sort()).toEqual(APP_TABLES);
    // Sluice's own schemas and the app helpers are not exposed.
    for (const r of [anon, alice, service]) {
      expect(new Set(r.tables.map((t) => t.schema))).toEqual(new Set(['public']));
      expect(new Set(r.functions.map((f) => f.schema))).toEqual(new Set(['public']));
    }
  });

  it('type_samples: insertable by authenticated, with types, nullability and enum values', () => {
    const samples = table(alice, 'type_samples');
    expect(samples).toMatchObject({ canSelect: true, canInsert: true, canUpdate: true, canDelete: true });
    expect(samples?.primaryKey).toEqual(['id']);
    expect(samples?.comment).toMatch(/round-trip tests/);
    // The identity column is generated always: readable, never writable.
    expect(column(samples, 'id')).toMatchObject({
      type: 'int8',
      nullable: false,
      hasDefault: true,
      canSelect: true,
      canInsert: false,
      canUpdate: false,
    });
    expect(column(samples, 'label')).toMatchObject({ type: 'text', nullable: true, canInsert: true });
    expect(column(samples, 'ints')).toMatchObject({ type: 'int8[]', isArray: true });
    expect(column(samples, 'jsb')).toMatchObject({ type: 'jsonb', isArray: false });
    expect(column(samples, 'mood')?.enumValues).toEqual(['happy', 'sad', 'ok']);
    expect(column(samples, 'mood')?.type).toMatch(/mood$/);
    expect(column(samples, 'label')?.enumValues).toEqual([]);
  });

  it('posts: primary key, foreign keys, generated column, defaults', () => {
    const posts = table(alice, 'posts');
    expect(posts?.primaryKey).toEqual(['id']);
    expect(posts?.foreignKeys).toEqual(
      expect.arrayContaining([
        {
          name: 'posts_tenant_id_fkey',
          columns: ['tenant_id'],
          referencedSchema: 'public',
          referencedTable: 'tenants',
          referencedColumns: ['id'],
        },
        {
          name: 'posts_author_id_fkey',
          columns: ['author_id'],
          referencedSchema: 'public',
          referencedTable: 'profiles',
          referencedColumns: ['id'],
        },
      ]),
    );
    expect(posts?.foreignKeys).toHaveLength(3);
    expect(column(posts, 'search')).toMatchObject({
      type: 'tsvector',
      canSelect: true,
      canInsert: false,
      canUpdate: false,
    });
    expect(column(posts, 'title')).toMatchObject({ nullable: false, hasDefault: false, canInsert: true });
    expect(column(posts, 'status')).toMatchObject({ nullable: false, hasDefault: true });
    expect(column(posts, 'tags')).toMatchObject({ type: 'text[]', isArray: true });
    // A composite primary key keeps its column order.
    expect(table(alice, 'tenant_memberships')?.primaryKey).toEqual(['tenant_id', 'user_id']);
  });

  it('functions with their arguments, return types and volatility', () => {
    expect(alice.functions.map((f) => f.name).sort()).toEqual([
      'create_post',
      'fail_with',
      'my_tenants',
      'search_posts',
      'tenant_post_count',
    ]);
    expect(fn(alice, 'create_post')).toMatchObject({
      schema: 'public',
      args: [
        { name: 'p_tenant_id', type: 'uuid', hasDefault: false },
        { name: 'p_title', type: 'text', hasDefault: false },
        { name: 'p_body', type: 'text', hasDefault: true },
      ],
      returnsSet: false,
      volatility: 'volatile',
    });
    expect(fn(alice, 'create_post')?.returnType).toMatch(/posts$/);
    expect(fn(alice, 'search_posts')).toMatchObject({
      args: [{ name: 'q', type: 'text', hasDefault: false }],
      returnsSet: true,
      volatility: 'stable',
    });
    expect(fn(alice, 'my_tenants')).toMatchObject({ args: [], returnsSet: true });
    expect(fn(alice, 'fail_with')).toMatchObject({ returnType: 'void', returnsSet: false });
    expect(fn(anon, 'tenant_post_count')).toMatchObject({
      args: [{ name: 'p_tenant_id', type: 'uuid', hasDefault: false }],
      returnsSet: false,
      volatility: 'stable',
    });
  });

  it('naming the exposed schema gives the same answer', async () => {
    const named = await stack.client(await stack.token('alice')).describeSchema({ schemas: ['public'] });
    expect(named).toEqual(alice);
  });

  it('an unknown or unexposed schema is INVALID_ARGUMENT', async () => {
    const client = stack.client(await stack.token('service'));
    for (const schema of ['nope', 'app', 'auth', 'pg_catalog']) {
      const r = await expectRejection(client.describeSchema({ schemas: ['public', schema] }), {
        code: Status.INVALID_ARGUMENT,
        reason: 'SLUICE_UNKNOWN_SCHEMA',
      });
      expect(r.fields).toEqual(['schemas[1]']);
    }
  });
});
