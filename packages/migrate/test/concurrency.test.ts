import path from 'node:path';
import { createTestDatabase, type TestDatabase } from '@sluice/testing';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { advisoryLockId } from '../src/lock-id';
import { Migrator } from '../src/migrator';

const dir = path.join(import.meta.dirname, 'fixtures', 'slow');
let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase({ empty: true });
});
afterAll(async () => {
  await db?.drop();
});

it('two runners at once: one waits, both finish, each migration runs once', async () => {
  const observer = new pg.Client({ connectionString: db.url });
  await observer.connect();
  try {
    // The side table the slow fixture's migrations append to, one row per run.
    await observer.query('CREATE TABLE run_log (version int NOT NULL)');

    // Watch pg_locks while the runners race: one must hold the advisory lock while the other waits.
    let sawWaiter = false;
    const keys = new Set<string>();
    let watching = true;
    const watch = (async () => {
      while (watching) {
        // A bigint advisory key shows as classid (high 32 bits) and objid (low 32 bits).
        const { rows } = await observer.query<{ granted: boolean; key: string }>(
          `SELECT l.granted, ((l.classid::bigint << 32) | l.objid::bigint)::text AS key FROM pg_locks l
            WHERE l.locktype = 'advisory' AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
        );
        for (const r of rows) keys.add(r.key);
        if (rows.some((r) => r.granted) && rows.some((r) => !r.granted)) sawWaiter = true;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();

    const a = new Migrator({ connectionString: db.url, dir });
    const b = new Migrator({ connectionString: db.url, dir });
    const [ra, rb] = await Promise.all([a.up(), b.up()]);
    watching = false;
    await watch;

    expect(sawWaiter).toBe(true);
    // The key is golang-migrate's for this URL: database name from the URL path, schema, table.
    expect([...keys]).toEqual([advisoryLockId(`/${db.name}`, 'public', 'schema_migrations')]);
    // One did both migrations, the other found nothing left to do.
    expect([ra.length, rb.length].sort()).toEqual([0, 2]);
    const counts = await observer.query(
      'SELECT version, count(*)::int AS runs FROM run_log GROUP BY 1 ORDER BY 1',
    );
    expect(counts.rows).toEqual([
      { version: 1, runs: 1 },
      { version: 2, runs: 1 },
    ]);
    const tracking = await observer.query('SELECT version::int, dirty FROM schema_migrations');
    expect(tracking.rows).toEqual([{ version: 2, dirty: false }]);
    // Locks are released when the runners finish.
    const left = await observer.query(
      `SELECT count(*)::int AS n FROM pg_locks
        WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    );
    expect(left.rows).toEqual([{ n: 0 }]);
  } finally {
    await observer.end();
  }
});
