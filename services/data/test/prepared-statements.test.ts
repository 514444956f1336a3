import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type TestStack } from './helpers';

// Requests run as named prepared statements, a bounded number per connection. These tests
// check the two ways that can go wrong: eviction (a statement dropped on the server but still
// used) and a schema change under a prepared statement ("cached plan must not change result type").

let small: TestStack;
let stack: TestStack;
let admin: pg.Client;

beforeAll(async () => {
  [small, stack] = await Promise.all([
    startStack({ DB_PREPARED_STATEMENTS: '2', DB_POOL_MAX: '2' }),
    startStack({ DB_POOL_MAX: '3' }),
  ]);
  admin = new pg.Client({ connectionString: stack.db.url });
  await admin.connect();
});

afterAll(async () => {
  await admin?.end();
  await Promise.all([small?.close(), stack?.close()]);
});

const SHAPES = [['id'], ['id', 'title'], ['title'], ['id', 'status'], ['status', 'id', 'title']];

describe('prepared statements', () => {
  it('evicts the least recently used statement per connection and keeps answering correctly', async () => {
    const alice = small.client(await small.token('alice'));
    for (let round = 0; round < 4; round++) {
      const results = await Promise.all(
        SHAPES.map((columns) =>
          alice.select({ table: 'posts', columns, order: [{ column: 'id' }], limit: 3 }),
        ),
      );
      for (const [i, res] of results.entries()) {
        expect(res.result?.columns.map((c) => c.name)).toEqual(SHAPES[i]);
        expect(res.result?.rows).toHaveLength(3);
      }
    }
  });

  it('survives a column type change under prepared statements once the catalog reloads', async () => {
    const alice = stack.client(await stack.token('alice'));
    const select = () => alice.select({ table: 'projects', columns: ['id', 'name'], limit: 2 });
    // Prepare the statement on every connection of the pool.
    await Promise.all(Array.from({ length: 12 }, select));
    expect((await select()).result?.columns.map((c) => c.type)).toEqual(['uuid', 'text']);

    await admin.query('alter table public.projects alter column name type varchar(400)');
    // The DDL event trigger notifies the service; wait for the reloaded catalog.
    const deadline = Date.now() + 5000;
    for (;;) {
      const schema = await alice.describeSchema({});
      const name = schema.tables.find((t) => t.name === 'projects')?.columns.find((c) => c.name === 'name');
      if (name?.type === 'varchar') break;
      if (Date.now() > deadline) throw new Error('catalog did not reload after DDL');
      await new Promise((r) => setTimeout(r, 50));
    }
    const after = await Promise.all(Array.from({ length: 12 }, select));
    for (const res of after) expect(res.result?.columns.map((c) => c.type)).toEqual(['uuid', 'varchar']);
  });

  it('keeps at most DB_PREPARED_STATEMENTS request statements per connection', async () => {
    // One connection, so every call below runs in the same session.
    const tiny = await startStack({ DB_PREPARED_STATEMENTS: '2', DB_POOL_MAX: '1' });
    const tinyAdmin = new pg.Client({ connectionString: tiny.db.url });
    await tinyAdmin.connect();
    try {
      await tinyAdmin.query(`
        create function public.session_statements() returns bigint language sql stable
          as 'select count(*) from pg_prepared_statements where name ~ ''^sluice_[0-9]+$''';
        grant execute on function public.session_statements() to authenticated`);
      const alice = tiny.client(await tiny.token('alice'));
      const counted = async () => {
        const res = await alice.call({ function: 'session_statements' });
        return Number((res.result?.rows[0]?.values[0]?.kind as { value: bigint } | undefined)?.value);
      };
      // The catalog reloads after the DDL above (and drops what was prepared): wait until the
      // function is known, then prepare.
      for (let attempt = 0; ; attempt++) {
        try {
          await counted();
          break;
        } catch (error) {
          if (attempt > 100) throw error;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      for (const columns of SHAPES) await alice.select({ table: 'posts', columns, limit: 1 });
      const count = await counted();
      // Five select shapes and the call ran; at most the setting's two stay prepared (besides
      // the fixed BEGIN/COMMIT statements, which are not counted).
      expect(count).toBeGreaterThan(0);
      expect(count).toBeLessThanOrEqual(2);
    } finally {
      await tinyAdmin.end();
      await tiny.close();
    }
  });
});
