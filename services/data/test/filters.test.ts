import { type Filter, Operator } from '@sluice/proto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DataClient, startStack, type TestStack } from './helpers';
import { and, cond, records, V } from './wire-values';

// Every filter operator against the same predicate written in SQL and run straight on the
// database: the ids Select returns (as service_role, so RLS does not interfere) must be exactly
// the ids PostgreSQL returns.

let stack: TestStack;
let service: DataClient;
let admin: pg.Client;

beforeAll(async () => {
  stack = await startStack();
  service = stack.client(await stack.token('service'));
  admin = new pg.Client({ connectionString: stack.db.url });
  await admin.connect();
});

afterAll(async () => {
  await admin?.end();
  await stack?.close();
});

const or = (...filters: Filter[]): Filter => ({ kind: { $case: 'or', value: { filters } } });
const not = (filter: Filter): Filter => ({ kind: { $case: 'not', value: filter } });
const match = (column: string, text: string, config = ''): Filter => ({
  kind: {
    $case: 'condition',
    value: { column, op: Operator.OPERATOR_MATCH, value: V.str(text), values: [], textSearchConfig: config },
  },
});

async function ids(table: string, filter: Filter): Promise<bigint[]> {
  const res = await service.select({
    table,
    columns: ['id'],
    filter,
    order: [{ column: 'id' }],
    limit: 1000,
  });
  return records(res.result).map((r) => r.id as bigint);
}

async function sqlIds(table: string, where: string, params: unknown[] = []): Promise<bigint[]> {
  const r = await admin.query(`select id from public.${table} where ${where} order by id`, params);
  return r.rows.map((row: { id: string }) => BigInt(row.id));
}

const cases: [string, string, Filter, string, unknown[]?][] = [
  ['EQ', 'posts', cond('status', Operator.OPERATOR_EQ, V.str('published')), "status = 'published'"],
  ['NEQ', 'posts', cond('status', Operator.OPERATOR_NEQ, V.str('published')), "status <> 'published'"],
  ['GT int8', 'posts', cond('view_count', Operator.OPERATOR_GT, V.int(100)), 'view_count > 100'],
  ['GTE numeric', 'posts', cond('score', Operator.OPERATOR_GTE, V.decimal('3.75')), 'score >= 3.75'],
  [
    'LT timestamptz',
    'posts',
    cond('created_at', Operator.OPERATOR_LT, V.ts(1707000000n)),
    'created_at < to_timestamp(1707000000)',
  ],
  ['LTE', 'posts', cond('id', Operator.OPERATOR_LTE, V.int(5)), 'id <= 5'],
  ['LIKE', 'posts', cond('title', Operator.OPERATOR_LIKE, V.str('%Acme%')), "title like '%Acme%'"],
  ['ILIKE', 'posts', cond('title', Operator.OPERATOR_ILIKE, V.str('%rocket%')), "title ilike '%rocket%'"],
  [
    'IN',
    'posts',
    cond('id', Operator.OPERATOR_IN, undefined, [V.int(1), V.int(3), V.int(12), V.int(999)]),
    'id in (1, 3, 12, 999)',
  ],
  ['IN empty', 'posts', cond('id', Operator.OPERATOR_IN, undefined, []), 'false'],
  ['IS null', 'posts', cond('published_at', Operator.OPERATOR_IS, V.null()), 'published_at is null'],
  ['IS true', 'type_samples', cond('flag', Operator.OPERATOR_IS, V.bool(true)), 'flag is true'],
  ['IS false', 'type_samples', cond('flag', Operator.OPERATOR_IS, V.bool(false)), 'flag is false'],
  [
    'CONTAINS array',
    'posts',
    cond('tags', Operator.OPERATOR_CONTAINS, V.list([V.str('news')])),
    "tags @> '{news}'",
  ],
  [
    'CONTAINED_BY array',
    'posts',
    cond('tags', Operator.OPERATOR_CONTAINED_BY, V.list([V.str('news'), V.str('welcome'), V.str('review')])),
    "tags <@ '{news,welcome,review}'",
  ],
  [
    'OVERLAPS array',
    'posts',
    cond('tags', Operator.OPERATOR_OVERLAPS, V.list([V.str('rockets'), V.str('welcome')])),
    "tags && '{rockets,welcome}'",
  ],
  [
    'CONTAINS jsonb',
    'posts',
    cond('metadata', Operator.OPERATOR_CONTAINS, V.json({ featured: true })),
    `metadata @> '{"featured": true}'`,
  ],
  [
    'CONTAINED_BY jsonb',
    'posts',
    cond('metadata', Operator.OPERATOR_CONTAINED_BY, V.json({ rating: 4, featured: true })),
    `metadata <@ '{"rating": 4, "featured": true}'`,
  ],
  [
    'MATCH tsvector',
    'posts',
    match('search', 'rockets anvils', 'english'),
    "search @@ websearch_to_tsquery('english', 'rockets anvils')",
  ],
  [
    'MATCH text (simple)',
    'posts',
    match('title', 'rocket OR acme'),
    "to_tsvector('simple', title) @@ websearch_to_tsquery('simple', 'rocket OR acme')",
  ],
  [
    'and/or/not',
    'posts',
    and(
      or(
        cond('status', Operator.OPERATOR_EQ, V.str('draft')),
        cond('view_count', Operator.OPERATOR_GT, V.int(300)),
      ),
      not(cond('deleted_at', Operator.OPERATOR_IS, V.null())),
    ),
    "(status = 'draft' or view_count > 300) and not (deleted_at is null)",
  ],
  ['empty and is true', 'posts', and(), 'true'],
  ['empty or is false', 'posts', or(), 'false'],
];

describe('filters match the same predicate in SQL', () => {
  for (const [name, table, filter, where] of cases) {
    it(name, async () => {
      const expected = await sqlIds(table, where);
      expect(await ids(table, filter)).toEqual(expected);
    });
  }

  it('the cases are not vacuous: most select some rows and not all', async () => {
    let selective = 0;
    for (const [, table, , where] of cases) {
      const n = (await sqlIds(table, where)).length;
      const all = (await sqlIds(table, 'true')).length;
      if (n > 0 && n < all) selective++;
    }
    expect(selective).toBeGreaterThanOrEqual(cases.length - 6);
  });
});
