import { mapPgError } from '@sluice/db';
import { createTestDatabase, type TestDatabase } from '@sluice/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// The SQLSTATE -> status table with PostgreSQL as the oracle: each statement below makes the real
// server raise an error of one class a request can cause, and mapPgError must give the status
// that says whose fault it is. INTERNAL is only for classes our own generated SQL could raise.

let db: TestDatabase;
let client: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase();
  client = new pg.Client({ connectionString: db.url });
  await client.connect();
  await client.query(`
    create table public.mapping_parent (id int primary key);
    create table public.mapping_child (id int references public.mapping_parent on delete restrict);
    create function public.mapping_no_return() returns int language plpgsql as 'begin end';
    create function public.mapping_assert() returns int language plpgsql as 'begin assert false; return 1; end';
    create view public.mapping_view as select id, id + 1 as derived from public.mapping_parent;
  `);
});
afterAll(async () => {
  await client?.end();
  await db?.drop();
});

async function pgError(sql: string): Promise<unknown> {
  await client.query('begin');
  try {
    await client.query(sql);
  } catch (error) {
    return error;
  } finally {
    await client.query('rollback');
  }
  throw new Error(`no error from: ${sql}`);
}

const cases: [string, string, string, string][] = [
  // [what, SQL, SQLSTATE, status]
  ['22012 division by zero', 'select 1 / 0', '22012', 'INVALID_ARGUMENT'],
  ['22P02 bad input syntax', "select 'x'::int", '22P02', 'INVALID_ARGUMENT'],
  ['22008 timestamp out of range', "select '294277-01-01'::timestamptz", '22008', 'INVALID_ARGUMENT'],
  ['42704 unknown text search configuration', "select 'nope'::regconfig", '42704', 'INVALID_ARGUMENT'],
  ['42602 invalid name syntax', "select 'a b'::regconfig", '42602', 'INVALID_ARGUMENT'],
  ['3F000 unknown schema', 'create table nope.x ()', '3F000', 'INVALID_ARGUMENT'],
  [
    '42P10 no unique constraint for ON CONFLICT',
    'insert into public.mapping_child values (1) on conflict (id) do nothing',
    '42P10',
    'INVALID_ARGUMENT',
  ],
  [
    '428C9 a value for an identity column',
    'insert into public.type_samples (id) values (1)',
    '428C9',
    'INVALID_ARGUMENT',
  ],
  [
    '21000 an upsert touching one row twice',
    'insert into public.mapping_parent values (1), (1) on conflict (id) do update set id = excluded.id',
    '21000',
    'INVALID_ARGUMENT',
  ],
  [
    '0A000 writing a computed view column',
    'insert into public.mapping_view (id, derived) values (1, 2)',
    '0A000',
    'INVALID_ARGUMENT',
  ],
  ['54000 arrays of 7 dimensions', "select '{{{{{{{1}}}}}}}'::int[]", '54000', 'INVALID_ARGUMENT'],
  [
    '23001 restrict violation',
    'insert into public.mapping_parent values (7); insert into public.mapping_child values (7); delete from public.mapping_parent where id = 7',
    '23503',
    'FAILED_PRECONDITION',
  ],
  ['2F005 function without RETURN', 'select public.mapping_no_return()', '2F005', 'FAILED_PRECONDITION'],
  ['P0004 assert failure', 'select public.mapping_assert()', 'P0004', 'FAILED_PRECONDITION'],
  ['42601 syntax error (only our own SQL)', 'selec 1', '42601', 'INTERNAL'],
];

describe('mapPgError on real PostgreSQL errors', () => {
  for (const [what, sql, sqlstate, status] of cases) {
    it(`${what}: ${status}`, async () => {
      const error = await pgError(sql);
      expect((error as { code?: string }).code).toBe(sqlstate);
      expect(mapPgError(error).code).toBe(status);
    });
  }

  it('a MATCH configuration error carries the configuration for the plan to name the field', async () => {
    const mapped = mapPgError(await pgError("select 'nope'::regconfig"));
    expect(mapped).toMatchObject({
      reason: 'SLUICE_UNKNOWN_TEXT_SEARCH_CONFIG',
      metadata: { text_search_config: 'nope' },
    });
  });

  it('a function failing in its own code does not leak its message', async () => {
    const mapped = mapPgError(await pgError('select public.mapping_assert()'));
    expect(mapped.message).not.toMatch(/assert/i);
    expect(mapped.metadata).toEqual({ sqlstate: 'P0004' });
  });

  it('a terminated backend and a refused connection are UNAVAILABLE', async () => {
    const victim = new pg.Client({ connectionString: db.url });
    await victim.connect();
    victim.on('error', () => {});
    const pid = (victim as unknown as { processID: number }).processID;
    await client.query('select pg_terminate_backend($1)', [pid]);
    const terminated = await victim.query('select 1').catch((e: unknown) => e);
    expect(mapPgError(terminated).code).toBe('UNAVAILABLE');
    await victim.end().catch(() => {});
    const refused = new pg.Client({ host: '127.0.0.1', port: 1, user: 'x', database: 'x' });
    const error = await refused.connect().catch((e: unknown) => e);
    expect((error as { code?: string }).code).toBe('ECONNREFUSED');
    expect(mapPgError(error).code).toBe('UNAVAILABLE');
  });
});
