import path from 'node:path';
import { SluiceError } from '@sluice/core';
import { createTestDatabase, type TestDatabase } from '@sluice/testing';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { advisoryLockId } from '../src/lock-id';
import { Migrator } from '../src/migrator';

const fixtures = path.join(import.meta.dirname, 'fixtures');
const databases: TestDatabase[] = [];

async function freshDatabase(): Promise<TestDatabase> {
  const db = await createTestDatabase({ empty: true });
  databases.push(db);
  return db;
}

afterAll(async () => {
  for (const db of databases) await db.drop();
});

async function query<T extends pg.QueryResultRow>(
  url: string,
  sql: string,
  params: unknown[] = [],
): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

async function tables(url: string): Promise<string[]> {
  const rows = await query<{ t: string }>(
    url,
    "SELECT table_name AS t FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
  );
  return rows.map((r) => r.t);
}

async function trackingRows(url: string, table = 'schema_migrations') {
  return query<{ version: string; dirty: boolean }>(url, `SELECT version, dirty FROM ${table}`);
}

describe('Migrator on the basic fixture', () => {
  it('goes all the way up and all the way down', async () => {
    const db = await freshDatabase();
    const lines: string[] = [];
    const m = new Migrator({
      connectionString: db.url,
      dir: path.join(fixtures, 'basic'),
      log: (l) => lines.push(l),
    });

    expect(await m.version()).toEqual({ version: null, dirty: false });
    expect(await m.pending()).toEqual([1, 2, 3]);

    const up = await m.up();
    expect(up.map((a) => [a.version, a.direction, path.basename(a.file ?? '')])).toEqual([
      [1, 'up', '000001_create_items.up.sql'],
      [2, 'up', '000002_add_color.up.sql'],
      [3, 'up', '000003_create_tags.up.sql'],
    ]);
    expect(await tables(db.url)).toEqual(['items', 'schema_migrations', 'tags']);
    expect(await query(db.url, 'SELECT id, name, color FROM items')).toEqual([
      { id: 1, name: 'one', color: 'red' },
    ]);
    expect(await trackingRows(db.url)).toEqual([{ version: '3', dirty: false }]);
    expect(await m.version()).toEqual({ version: 3, dirty: false });
    expect(await m.pending()).toEqual([]);
    expect(lines).toContain(`2/u add_color (${up[1]?.durationMs}ms)`);

    // Already current: nothing runs.
    expect(await m.up()).toEqual([]);

    const down = await m.down();
    expect(down.map((a) => [a.version, a.direction])).toEqual([
      [3, 'down'],
      [2, 'down'],
      [1, 'down'],
    ]);
    expect(await tables(db.url)).toEqual(['schema_migrations']);
    // Nil version: golang-migrate leaves the table empty.
    expect(await trackingRows(db.url)).toEqual([]);
    expect(await m.version()).toEqual({ version: null, dirty: false });
    expect(await m.down()).toEqual([]);
  });

  it('steps with up N / down N and jumps with goto', async () => {
    const db = await freshDatabase();
    const m = new Migrator({ connectionString: db.url, dir: path.join(fixtures, 'basic') });

    expect((await m.up(1)).map((a) => a.version)).toEqual([1]);
    expect(await m.version()).toEqual({ version: 1, dirty: false });
    expect(await m.pending()).toEqual([2, 3]);
    expect((await m.up(2)).map((a) => a.version)).toEqual([2, 3]);
    expect((await m.down(1)).map((a) => a.version)).toEqual([3]);
    expect(await m.version()).toEqual({ version: 2, dirty: false });
    expect(await tables(db.url)).toEqual(['items', 'schema_migrations']);

    expect((await m.goto(1)).map((a) => [a.version, a.direction])).toEqual([[2, 'down']]);
    expect(await m.version()).toEqual({ version: 1, dirty: false });
    expect((await m.goto(3n)).map((a) => [a.version, a.direction])).toEqual([
      [2, 'up'],
      [3, 'up'],
    ]);
    expect(await m.goto(3)).toEqual([]);
    expect(await trackingRows(db.url)).toEqual([{ version: '3', dirty: false }]);
  });

  it('rejects bad arguments without changing anything', async () => {
    const db = await freshDatabase();
    const m = new Migrator({ connectionString: db.url, dir: path.join(fixtures, 'basic') });
    await m.up(1);
    await expect(m.up(5)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: /only 2 pending/ });
    await expect(m.down(2)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: /only 1 applied/ });
    await expect(m.up(0)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(m.up(1.5)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(m.goto(42)).rejects.toMatchObject({
      code: 'NOT_FOUND',
      message: /No migration with version 42/,
    });
    await expect(m.force(-2)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(() => new Migrator({ connectionString: db.url, dir: fixtures, table: '' })).toThrow(SluiceError);
    expect(await m.version()).toEqual({ version: 1, dirty: false });
  });

  it('reports a database version that has no file as NOT_FOUND', async () => {
    const db = await freshDatabase();
    const m = new Migrator({ connectionString: db.url, dir: path.join(fixtures, 'basic') });
    await m.force(9);
    await expect(m.up()).rejects.toMatchObject({ code: 'NOT_FOUND', message: /version 9/ });
  });

  it('creates the tracking table exactly as golang-migrate does', async () => {
    const db = await freshDatabase();
    await new Migrator({ connectionString: db.url, dir: path.join(fixtures, 'basic') }).up(1);
    const columns = await query(
      db.url,
      `SELECT column_name, data_type, is_nullable, column_default
         FROM information_schema.columns
        WHERE table_schema = 'public' AND table_name = 'schema_migrations' ORDER BY ordinal_position`,
    );
    expect(columns).toEqual([
      { column_name: 'version', data_type: 'bigint', is_nullable: 'NO', column_default: null },
      { column_name: 'dirty', data_type: 'boolean', is_nullable: 'NO', column_default: null },
    ]);
    const pk = await query(
      db.url,
      `SELECT a.attname FROM pg_index i
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
        WHERE i.indrelid = 'public.schema_migrations'::regclass AND i.indisprimary`,
    );
    expect(pk).toEqual([{ attname: 'version' }]);
    const constraints = await query(
      db.url,
      `SELECT contype FROM pg_constraint WHERE conrelid = 'public.schema_migrations'::regclass`,
    );
    expect(constraints).toEqual([{ contype: 'p' }]);
  });

  it('keeps independent sets in independent tables (and lock keys)', async () => {
    const db = await freshDatabase();
    const core = new Migrator({
      connectionString: db.url,
      dir: path.join(fixtures, 'broken'),
      table: 'sluice_schema_migrations',
    });
    const app = new Migrator({ connectionString: db.url, dir: path.join(fixtures, 'basic') });
    await core.up(1);
    await app.up();
    expect(await core.version()).toEqual({ version: 1, dirty: false });
    expect(await app.version()).toEqual({ version: 3, dirty: false });
    expect(await trackingRows(db.url, 'sluice_schema_migrations')).toEqual([{ version: '1', dirty: false }]);
    expect(await trackingRows(db.url)).toEqual([{ version: '3', dirty: false }]);
    const dbPath = `/${db.name}`;
    expect(advisoryLockId(dbPath, 'public', 'sluice_schema_migrations')).not.toBe(
      advisoryLockId(dbPath, 'public', 'schema_migrations'),
    );
  });

  it('puts the tracking table in current_schema() or the schema given', async () => {
    const db = await freshDatabase();
    await query(db.url, 'CREATE SCHEMA app');
    const url = new URL(db.url);
    url.searchParams.set('options', '-c search_path=app');
    await new Migrator({ connectionString: url.toString(), dir: path.join(fixtures, 'broken') }).up(1);
    expect(await trackingRows(db.url, 'app.schema_migrations')).toEqual([{ version: '1', dirty: false }]);
    await new Migrator({
      connectionString: db.url,
      dir: path.join(fixtures, 'broken'),
      schema: 'app',
      table: 't2',
    }).force(1);
    expect(await trackingRows(db.url, 'app.t2')).toEqual([{ version: '1', dirty: false }]);
  });
});

describe('a failing migration', () => {
  it('leaves the database dirty, names the file and position, and is refused until force', async () => {
    const db = await freshDatabase();
    const m = new Migrator({ connectionString: db.url, dir: path.join(fixtures, 'broken') });

    const error = await m.up().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(SluiceError);
    const e = error as SluiceError;
    expect(e.code).toBe('FAILED_PRECONDITION');
    expect(e.reason).toBe('SLUICE_MIGRATION_FAILED');
    expect(e.message).toContain('000002_broken.up.sql');
    expect(e.message).toContain('relation "missing_table" does not exist');
    expect(e.message).toContain('(line 2, column 13)');
    expect(e.metadata).toMatchObject({
      file: '000002_broken.up.sql',
      version: '2',
      sqlstate: '42P01',
      line: '2',
    });

    // The file ran as one implicit transaction: its first statement was rolled back too.
    expect(await tables(db.url)).toEqual(['ok_table', 'schema_migrations']);
    expect(await trackingRows(db.url)).toEqual([{ version: '2', dirty: true }]);
    expect(await m.version()).toEqual({ version: 2, dirty: true });

    for (const attempt of [() => m.up(), () => m.down(), () => m.down(1), () => m.goto(1)]) {
      await expect(attempt()).rejects.toMatchObject({
        code: 'FAILED_PRECONDITION',
        reason: 'SLUICE_MIGRATION_DIRTY',
        message: expect.stringMatching(/dirty at version 2 .*force 2/),
      });
    }
    expect(await trackingRows(db.url)).toEqual([{ version: '2', dirty: true }]);

    await m.force(1);
    expect(await m.version()).toEqual({ version: 1, dirty: false });
    expect((await m.down()).map((a) => a.version)).toEqual([1]);
    expect(await tables(db.url)).toEqual(['schema_migrations']);
  });

  it('force -1 empties the tracking table', async () => {
    const db = await freshDatabase();
    const m = new Migrator({ connectionString: db.url, dir: path.join(fixtures, 'broken') });
    await expect(m.up()).rejects.toThrow();
    await m.force(-1);
    expect(await trackingRows(db.url)).toEqual([]);
    expect(await m.version()).toEqual({ version: null, dirty: false });
  });
});

describe('cancellation', () => {
  it('stops between migrations, leaving the last one applied and clean', async () => {
    const db = await freshDatabase();
    const controller = new AbortController();
    const m = new Migrator({
      connectionString: db.url,
      dir: path.join(fixtures, 'basic'),
      log: (line) => {
        if (line.startsWith('1/u')) controller.abort();
      },
    });
    await expect(m.up(undefined, { signal: controller.signal })).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(await m.version()).toEqual({ version: 1, dirty: false });
  });

  it('abandons the wait for the lock and leaves no waiting session behind', async () => {
    const db = await freshDatabase();
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    try {
      await holder.query('SELECT pg_advisory_lock($1)', [
        advisoryLockId(`/${db.name}`, 'public', 'schema_migrations'),
      ]);
      const m = new Migrator({ connectionString: db.url, dir: path.join(fixtures, 'basic') });
      const started = Date.now();
      const run = m.up(undefined, { signal: AbortSignal.timeout(300) });
      await expect(run).rejects.toMatchObject({ code: 'DEADLINE_EXCEEDED' });
      expect(Date.now() - started).toBeLessThan(5000);
      const waiting = await holder.query(
        // This database only: other test files wait for advisory locks in their own databases.
        `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
      );
      expect(waiting.rows[0]).toEqual({ n: 0 });
    } finally {
      await holder.end();
    }
    // Nothing ran; even the tracking table is only created under the lock.
    expect(await tables(db.url)).toEqual([]);
  });
});
