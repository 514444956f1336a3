import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { AbortOptions } from '@sluice/core';
import { type Applied, listMigrations, Migrator, runCliProcess, withAdvisoryLock } from '@sluice/migrate';
import { withSession } from './session';

/** Sluice's own schema (roles, auth.* helpers, the sluice schema), versioned apart from the user's. */
export const CORE_MIGRATIONS_DIR = fileURLToPath(new URL('../migrations', import.meta.url));
export const CORE_MIGRATIONS_TABLE = 'sluice_schema_migrations';

export interface MigrateAllOptions extends AbortOptions {
  /** The user's golang-migrate folder (the reference application's `migrations/` by default). */
  readonly userDir: string;
  readonly log?: (message: string) => void;
}

/**
 * Brings a database up to date (the release step): Sluice's core migrations first (table
 * sluice_schema_migrations), then the user's (table schema_migrations), then the grants on both
 * tracking tables. The whole sequence holds one advisory lock of its own (key: database,
 * "sluice", "release"), so two releases or service starts that race run it one after the other:
 * the second finds nothing to do. Each migrator also holds golang-migrate's lock for its table,
 * so a plain `migrate` CLI run against the same folder waits too. Run it over a direct
 * connection (not a transaction-mode pooler: session advisory locks need one backend).
 *
 * A failing migration stops the sequence: the migrations before it stay applied, its set is left
 * dirty at its version (see Migrator.up), and later sets are not touched.
 *
 * @throws SluiceError FAILED_PRECONDITION when a database is dirty or a migration fails;
 *   the abort error when `signal` fires while waiting for the lock or between migrations.
 */
export async function migrateAll(connectionString: string, options: MigrateAllOptions): Promise<Applied[]> {
  const { signal, log } = options;
  const common = { connectionString, ...(log ? { log } : {}) };
  const abort = signal ? { signal } : {};
  return withAdvisoryLock(
    connectionString,
    ['sluice', 'release'],
    async () => {
      const core = await new Migrator({
        ...common,
        dir: CORE_MIGRATIONS_DIR,
        table: CORE_MIGRATIONS_TABLE,
      }).up(undefined, abort);
      const user = await new Migrator({ ...common, dir: options.userDir }).up(undefined, abort);
      await grantTrackingTables(connectionString);
      return [...core, ...user];
    },
    { ...abort, ...(log ? { log } : {}) },
  );
}

/**
 * The release command as this process's command line (`npm run migrate`, `node dist/migrate.js`):
 * @sluice/migrate's golang-migrate compatible CLI whose `up` (all pending, default table) runs
 * {@link migrateAll} with the folder as the user's migrations: core schema, folder, grants, under
 * one lock. Sets `process.exitCode`; SIGINT/SIGTERM stop between migrations.
 */
export function runReleaseCli(): Promise<void> {
  return runCliProcess({
    upAll: (url, { dir, signal, log }) =>
      migrateAll(url, { userDir: dir, log, ...(signal ? { signal } : {}) }),
  });
}

/**
 * Lets the service's login role read both tracking tables, so the data service's readiness check
 * (migrationsCurrent over DATABASE_URL) works without superuser credentials. Run after every
 * migrateAll, so databases migrated before this grant existed get it too. The tables are named
 * unqualified, as the migrators place them: in the session's current schema.
 */
async function grantTrackingTables(connectionString: string): Promise<void> {
  await withSession({ connectionString, applicationName: 'sluice-migrate' }, (client) =>
    client.query(`grant select on table ${CORE_MIGRATIONS_TABLE}, schema_migrations to sluice_authenticator`),
  );
}

/**
 * True unless the database's core schema is at a version this build has no migration for: the
 * core migrations were folded once (the project is unreleased), so a database migrated with the
 * earlier numbering (core versions 4-11, where 6 and 7 meant other migrations) cannot be
 * brought up to date and must be recreated.
 */
export async function coreSchemaKnown(connectionString: string): Promise<boolean> {
  const [state, files] = await Promise.all([
    new Migrator({ connectionString, dir: CORE_MIGRATIONS_DIR, table: CORE_MIGRATIONS_TABLE }).version(),
    listMigrations(CORE_MIGRATIONS_DIR),
  ]);
  if (state.version === null) return true;
  if (!files.some((m) => m.version === state.version)) return false;
  // Versions 6 and 7 existed under the old numbering too (other migrations then): the folded
  // 000006 is the one that made sluice.refresh_version_check.
  if (state.version < 6) return true;
  return withSession({ connectionString, applicationName: 'sluice-launcher' }, async (client) => {
    const { rows } = await client.query(
      "select to_regprocedure('sluice.refresh_version_check(regclass)') is not null as folded",
    );
    return rows[0]?.folded === true;
  });
}

/** True when neither migration set has anything pending and neither is dirty. */
export async function migrationsCurrent(connectionString: string, userDir: string): Promise<boolean> {
  for (const m of [
    new Migrator({ connectionString, dir: CORE_MIGRATIONS_DIR, table: CORE_MIGRATIONS_TABLE }),
    new Migrator({ connectionString, dir: userDir }),
  ]) {
    const [state, pending] = await Promise.all([m.version(), m.pending()]);
    if (state.dirty || pending.length > 0) return false;
  }
  return true;
}

/** Runs a SQL file in one transaction (the demo seed). */
export async function runSqlFile(connectionString: string, file: string): Promise<void> {
  const text = await readFile(file, 'utf8');
  await withSession({ connectionString, applicationName: 'sluice-seed' }, async (client) => {
    try {
      await client.query('begin');
      await client.query(text);
      await client.query('commit');
    } catch (error) {
      await client.query('rollback').catch(() => {});
      throw error;
    }
  });
}
