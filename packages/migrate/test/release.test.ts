import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { isSluiceError } from '@sluice/core';
import { CORE_MIGRATIONS_DIR, CORE_MIGRATIONS_TABLE, migrateAll } from '@sluice/db';
import { createTestDatabase, REFERENCE_MIGRATIONS_DIR, type TestDatabase } from '@sluice/testing';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { advisoryLockId } from '../src/lock-id';
import { listMigrations } from '../src/migration-files';
import { runCli } from '../src/run-cli';

// The release command (`npm run migrate -- up`, `node dist/migrate.js up`, fly.toml's
// release_command) on an external database: Sluice's core schema, then the application's
// folder, then the grants, under one advisory lock. Every test starts from an empty database
// (template0), as a freshly provisioned external database is.

const fixtures = path.join(import.meta.dirname, 'fixtures');
const root = path.resolve(import.meta.dirname, '../../..');
const entry = path.join(root, 'services/all/src/migrate.ts');
const tsx = path.join(root, 'node_modules/.bin/tsx');
const run = promisify(execFile);

const databases: TestDatabase[] = [];
async function freshDatabase(): Promise<TestDatabase> {
  const db = await createTestDatabase({ empty: true });
  databases.push(db);
  return db;
}
afterEach(async () => {
  await Promise.all(databases.splice(0).map((db) => db.drop()));
});

async function query<T extends pg.QueryResultRow>(url: string, sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

const tracking = (url: string, table: string) =>
  query<{ version: number; dirty: boolean }>(url, `select version::int, dirty from ${table}`);

/** The release CLI as `npm run migrate` wires it (runCli with migrateAll for `up`). */
async function release(argv: string[], url: string) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(argv, {
    env: { DATABASE_URL: url },
    out: (l) => out.push(l),
    err: (l) => err.push(l),
    upAll: (target, { dir, log }) => migrateAll(target, { userDir: dir, log }),
  });
  return { code, out, err };
}

/** The release command as a process: `tsx services/all/src/migrate.ts …` (what npm run migrate runs). */
function releaseProcess(args: string[], env: Record<string, string>) {
  const { DATABASE_URL: _, MIGRATE_DATABASE_URL: __, ...rest } = process.env;
  return run(tsx, [entry, ...args], { env: { ...rest, ...env }, cwd: root }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({
      code: e.code,
      stdout: e.stdout,
      stderr: e.stderr,
    }),
  );
}

const coreCount = async () => (await listMigrations(CORE_MIGRATIONS_DIR)).length;
const coreLatest = async () => (await listMigrations(CORE_MIGRATIONS_DIR)).at(-1)?.version;
const appLatest = async () => (await listMigrations(REFERENCE_MIGRATIONS_DIR)).at(-1)?.version;

describe('release: migrate up on an external database', () => {
  it('applies the core schema, then the application, on a fresh database; a second run is a no-op', async () => {
    const db = await freshDatabase();
    const first = await release(['up', '--path', REFERENCE_MIGRATIONS_DIR], db.url);
    expect(first.err).toEqual([]);
    expect(first.code).toBe(0);
    const core = first.out.filter((l) => l.startsWith('core '));
    expect(core).toHaveLength(await coreCount());
    expect(core[0]).toMatch(/^core 1\/u roles \(\d+ms\)$/);
    expect(first.out.length).toBe(core.length + (await listMigrations(REFERENCE_MIGRATIONS_DIR)).length);
    // Core first, then the application's folder.
    expect(first.out.findIndex((l) => !l.startsWith('core '))).toBe(core.length);

    expect(await tracking(db.url, CORE_MIGRATIONS_TABLE)).toEqual([
      { version: await coreLatest(), dirty: false },
    ]);
    expect(await tracking(db.url, 'schema_migrations')).toEqual([
      { version: await appLatest(), dirty: false },
    ]);
    // The grants: the service's login role can read both tracking tables (its readiness check does).
    expect(await tracking(db.appUrl, CORE_MIGRATIONS_TABLE)).toHaveLength(1);
    expect(await tracking(db.appUrl, 'schema_migrations')).toHaveLength(1);

    expect(await release(['up', '--path', REFERENCE_MIGRATIONS_DIR], db.url)).toEqual({
      code: 0,
      out: ['no change'],
      err: [],
    });
  });

  it('two releases racing: both succeed, one applies everything, each migration runs once', async () => {
    const db = await freshDatabase();
    await query(db.url, 'create table run_log (version int not null)');
    const dir = path.join(fixtures, 'slow');
    const [a, b] = await Promise.all([
      migrateAll(db.url, { userDir: dir }),
      migrateAll(db.url, { userDir: dir }),
    ]);
    const total = (await coreCount()) + 2;
    expect([a.length, b.length].sort((x, y) => x - y)).toEqual([0, total]);
    expect(
      await query(db.url, 'select version, count(*)::int as runs from run_log group by 1 order by 1'),
    ).toEqual([
      { version: 1, runs: 1 },
      { version: 2, runs: 1 },
    ]);
    expect(await tracking(db.url, 'schema_migrations')).toEqual([{ version: 2, dirty: false }]);
    expect(await tracking(db.url, CORE_MIGRATIONS_TABLE)).toEqual([
      { version: await coreLatest(), dirty: false },
    ]);
  });

  it('two release processes racing (npm run migrate -- up): both exit 0, each migration once', async () => {
    const db = await freshDatabase();
    await query(db.url, 'create table run_log (version int not null)');
    const args = ['up', '--path', path.join(fixtures, 'slow')];
    const [a, b] = await Promise.all([
      releaseProcess(args, { MIGRATE_DATABASE_URL: db.url }),
      releaseProcess(args, { DATABASE_URL: db.url }),
    ]);
    expect([a.code, b.code]).toEqual([0, 0]);
    const outputs = [a.stdout, b.stdout].sort((x, y) => x.length - y.length);
    expect(outputs[0]).toBe('no change\n');
    expect(outputs[1]).toMatch(/^core 1\/u roles [\s\S]*\n2\/u after_slow \(\d+ms\)\n$/);
    expect(
      await query(db.url, 'select version, count(*)::int as runs from run_log group by 1 order by 1'),
    ).toEqual([
      { version: 1, runs: 1 },
      { version: 2, runs: 1 },
    ]);
  });

  it('a failing application migration: a clear error, the core schema applied, the application dirty at that version', async () => {
    const db = await freshDatabase();
    const failed = await release(['up', '--path', path.join(fixtures, 'broken')], db.url);
    expect(failed.code).toBe(1);
    expect(failed.out).toEqual([]);
    expect(failed.err).toEqual([
      expect.stringMatching(
        /^error: Migration 000002_broken\.up\.sql failed: relation "missing_table" does not exist \(line 2, column 13\)\. The database is left dirty at version 2 \(public\.schema_migrations\); fix it by hand, then run "force <version>"\.$/,
      ),
    ]);
    // What Migrator.up documents: the migrations before it stay, the failed one's version is dirty
    // (its own statements rolled back: one implicit transaction), the core schema is complete.
    expect(await tracking(db.url, CORE_MIGRATIONS_TABLE)).toEqual([
      { version: await coreLatest(), dirty: false },
    ]);
    expect(await tracking(db.url, 'schema_migrations')).toEqual([{ version: 2, dirty: true }]);
    expect(
      await query(
        db.url,
        "select to_regclass('ok_table') is not null as ok, to_regclass('half_done') is null as rolled_back",
      ),
    ).toEqual([{ ok: true, rolled_back: true }]);

    // The next release refuses to go on until an operator fixes it and forces the version.
    const again = await release(['up', '--path', path.join(fixtures, 'broken')], db.url);
    expect(again).toMatchObject({
      code: 1,
      err: [expect.stringMatching(/dirty at version 2 \(public\.schema_migrations\)/)],
    });
    expect(await release(['force', '1', '--path', path.join(fixtures, 'broken')], db.url)).toMatchObject({
      code: 0,
    });
    expect(await tracking(db.url, 'schema_migrations')).toEqual([{ version: 1, dirty: false }]);
  });

  it('the release process exits 1 with the message on stderr when a migration fails', async () => {
    const db = await freshDatabase();
    const r = await releaseProcess(['up', '--path', path.join(fixtures, 'broken')], { DATABASE_URL: db.url });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: Migration 000002_broken\.up\.sql failed: .* left dirty at version 2/);
  });

  it('waiting for a release that holds the lock can be cancelled, and then changes nothing', async () => {
    const db = await freshDatabase();
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    try {
      const key = advisoryLockId(db.name, 'sluice', 'release');
      await holder.query('select pg_advisory_lock($1)', [key]);
      const controller = new AbortController();
      const waiting = migrateAll(db.url, { userDir: REFERENCE_MIGRATIONS_DIR, signal: controller.signal });
      await new Promise((resolve) => setTimeout(resolve, 300));
      controller.abort();
      const error = await waiting.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isSluiceError(error) && error.code).toBe('CANCELLED');
      expect(
        await query(db.url, "select to_regclass('sluice_schema_migrations') is null as untouched"),
      ).toEqual([{ untouched: true }]);
    } finally {
      await holder.end();
    }
  });
});
