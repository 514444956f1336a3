import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { type AbortOptions, abortError, SluiceError, throwIfAborted } from '@sluice/core';
import pg from 'pg';
import { cancelBackend } from './advisory-lock';
import { badArgument, dirtyDatabase, notFound } from './errors';
import { advisoryLockId } from './lock-id';
import { listMigrations, type Migration } from './migration-files';

export interface MigratorOptions {
  /** PostgreSQL URL. Its path (e.g. `/app`) names the database in the lock key, as the `migrate` CLI does. */
  readonly connectionString: string;
  /** Folder of `NNNNNN_name.up.sql` / `.down.sql` files. */
  readonly dir: string;
  /** Tracking table; default `schema_migrations` (golang-migrate's default). */
  readonly table?: string;
  /** Schema of the tracking table; default `current_schema()` (what golang-migrate uses). */
  readonly schema?: string;
  /** Progress lines (one per migration); silent when omitted. */
  readonly log?: (msg: string) => void;
}

/** One migration that ran. `file` is null when the version had no file for that direction. */
export interface Applied {
  readonly version: number;
  readonly name: string;
  readonly direction: 'up' | 'down';
  readonly file: string | null;
  readonly durationMs: number;
}

/** The tracking table's state; `version` null is golang-migrate's nil version (no row, or -1). */
export interface VersionState {
  readonly version: number | null;
  readonly dirty: boolean;
}

/** golang-migrate's `database.NilVersion`. */
const NIL_VERSION = -1;

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * The database name golang-migrate's postgres driver puts in the lock key when opened from a URL
 * (the `migrate` CLI): the URL's decoded path, leading slash included. Undefined when the string
 * is not a URL or has no path; golang-migrate then asks `current_database()`, and so do we.
 */
function databaseNameInUrl(connectionString: string): string | undefined {
  let url: URL;
  try {
    url = new URL(connectionString);
  } catch {
    return undefined;
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') return undefined;
  if (url.pathname === '') return undefined;
  try {
    return decodeURIComponent(url.pathname);
  } catch {
    return url.pathname;
  }
}

/** 1-based line and column of PostgreSQL's 1-based character `position` in `text`, like golang-migrate. */
function lineAndColumn(text: string, position: number): { line: number; column: number } | undefined {
  const chars = Array.from(text.replaceAll('\r\n', '\n'));
  if (!Number.isInteger(position) || position < 1 || position > chars.length) return undefined;
  const before = chars.slice(0, position);
  const line = before.filter((c) => c === '\n').length + 1;
  const column = position - 1 - before.lastIndexOf('\n');
  return { line, column };
}

function toVersion(value: number | bigint, field: string, min: number): number {
  const n = typeof value === 'bigint' ? Number(value) : value;
  if (!Number.isSafeInteger(n) || n < min || (typeof value === 'bigint' && BigInt(n) !== value)) {
    throw badArgument(`${field} must be an integer >= ${min}, got ${String(value)}`, field);
  }
  return n;
}

function toCount(n: number | undefined, field: string): number | undefined {
  if (n === undefined) return undefined;
  if (!Number.isSafeInteger(n) || n < 1) {
    throw badArgument(`${field} must be a positive integer, got ${String(n)}`, field);
  }
  return n;
}

/** One connection to the database with the tracking table resolved. */
interface Session {
  readonly client: pg.Client;
  readonly schema: string;
  readonly table: string;
  /** `"schema"."table"` for SQL. */
  readonly qualified: string;
  /** `schema.table` for messages. */
  readonly display: string;
  readonly lockId: string;
  readonly pid: number;
}

/**
 * A golang-migrate compatible migration runner for one folder and one tracking table.
 *
 * Every verb opens its own session connection (a `pg.Client`, not a pool) and, for verbs that
 * change anything, holds `pg_advisory_lock(<golang-migrate's key>)` on it for the whole run: a
 * second runner waits, then sees the new version. Each migration file runs as one simple-query
 * exec (one implicit transaction unless the file manages its own), bracketed by setting the
 * tracking row to `(target, dirty=true)` before and `(target, dirty=false)` after.
 *
 * Cancellation: `signal` is checked between migrations and aborts the wait for the lock; a
 * migration that has started is never interrupted (that would leave the database dirty).
 */
export class Migrator {
  readonly #options: MigratorOptions;
  readonly #table: string;
  readonly #log: (msg: string) => void;

  /** Throws INVALID_ARGUMENT for an empty connection string, folder or table name. */
  constructor(options: MigratorOptions) {
    if (!options.connectionString) throw badArgument('connectionString is required', 'connectionString');
    if (!options.dir) throw badArgument('dir is required', 'dir');
    const table = options.table ?? 'schema_migrations';
    if (!table) throw badArgument('table must not be empty', 'table');
    if (options.schema === '') throw badArgument('schema must not be empty', 'schema');
    this.#options = Object.freeze({ ...options });
    this.#table = table;
    this.#log = options.log ?? (() => {});
  }

  /**
   * Applies the next `n` pending migrations (all when omitted). Returns what ran (empty when
   * already current). Throws FAILED_PRECONDITION on a dirty database or when a migration fails
   * (the database is then left dirty at that version), NOT_FOUND when the database's version has
   * no file in the folder, INVALID_ARGUMENT when fewer than `n` migrations are pending.
   */
  async up(n?: number, options: AbortOptions = {}): Promise<Applied[]> {
    const count = toCount(n, 'n');
    return this.#locked(options, async (session, migrations) => {
      const current = await this.#readClean(session);
      const from = this.#indexOf(migrations, current);
      let steps = migrations.slice(from + 1);
      if (count !== undefined) {
        if (count > steps.length) {
          throw badArgument(`Cannot apply ${count} migrations up: only ${steps.length} pending`, 'n');
        }
        steps = steps.slice(0, count);
      }
      const applied: Applied[] = [];
      for (const m of steps) applied.push(await this.#step(session, m, 'up', m.version, options.signal));
      return applied;
    });
  }

  /**
   * Rolls back the last `n` applied migrations (all of them when omitted, like `migrate down -all`).
   * Throws like `up`; INVALID_ARGUMENT when fewer than `n` migrations are applied.
   */
  async down(n?: number, options: AbortOptions = {}): Promise<Applied[]> {
    const count = toCount(n, 'n');
    return this.#locked(options, async (session, migrations) => {
      const current = await this.#readClean(session);
      const from = this.#indexOf(migrations, current);
      const available = from + 1;
      if (count !== undefined && count > available) {
        throw badArgument(`Cannot roll back ${count} migrations: only ${available} applied`, 'n');
      }
      return this.#downTo(session, migrations, from, from - (count ?? available), options.signal);
    });
  }

  /**
   * Migrates up or down to exactly `version`, which must exist in the folder (NOT_FOUND otherwise).
   * Throws like `up`.
   */
  async goto(version: number | bigint, options: AbortOptions = {}): Promise<Applied[]> {
    const target = toVersion(version, 'version', 0);
    return this.#locked(options, async (session, migrations) => {
      const to = migrations.findIndex((m) => m.version === target);
      if (to < 0) throw notFound(`No migration with version ${target} in ${this.#options.dir}`);
      const current = await this.#readClean(session);
      const from = this.#indexOf(migrations, current);
      if (to < from) return this.#downTo(session, migrations, from, to, options.signal);
      const applied: Applied[] = [];
      for (const m of migrations.slice(from + 1, to + 1)) {
        applied.push(await this.#step(session, m, 'up', m.version, options.signal));
      }
      return applied;
    });
  }

  /**
   * Sets the tracking table to `version` (-1 = no version), not dirty, without running anything —
   * the way out after fixing a failed migration by hand. Works on a dirty database.
   */
  async force(version: number | bigint, options: AbortOptions = {}): Promise<void> {
    const target = toVersion(version, 'version', NIL_VERSION);
    await this.#locked(
      options,
      async (session) => {
        await this.#setVersion(session, target, false);
        this.#log(`forced version ${target}`);
      },
      false,
    );
  }

  /**
   * The tracking table's version and dirty flag. Reads without taking the lock or creating the
   * table (a missing table is the nil version), so read-only roles and readiness checks can call it.
   */
  async version(options: AbortOptions = {}): Promise<VersionState> {
    return this.#unlocked(options, (session) => this.#readVersion(session, true));
  }

  /** Versions in the folder above the database's version, ascending. Read-only like `version`. */
  async pending(options: AbortOptions = {}): Promise<number[]> {
    const migrations = await listMigrations(this.#options.dir);
    const { version } = await this.version(options);
    return migrations.filter((m) => version === null || m.version > version).map((m) => m.version);
  }

  async #downTo(
    session: Session,
    migrations: Migration[],
    from: number,
    to: number,
    signal: AbortSignal | undefined,
  ): Promise<Applied[]> {
    const applied: Applied[] = [];
    for (let i = from; i > to; i--) {
      const m = migrations[i] as Migration;
      const target = i > 0 ? (migrations[i - 1] as Migration).version : NIL_VERSION;
      applied.push(await this.#step(session, m, 'down', target, signal));
    }
    return applied;
  }

  /** Index of `version` in the folder; -1 for the nil version; NOT_FOUND when the file is gone. */
  #indexOf(migrations: Migration[], version: number | null): number {
    if (version === null) return -1;
    const i = migrations.findIndex((m) => m.version === version);
    if (i < 0) {
      throw notFound(
        `The database is at version ${version} but ${this.#options.dir} has no migration ${version}`,
        { version: String(version) },
      );
    }
    return i;
  }

  async #readClean(session: Session): Promise<number | null> {
    const state = await this.#readVersion(session, false);
    if (state.dirty) throw dirtyDatabase(state.version, session.display);
    return state.version;
  }

  async #readVersion(session: Session, tolerateMissingTable: boolean): Promise<VersionState> {
    try {
      const { rows } = await session.client.query<{ version: string; dirty: boolean }>(
        `SELECT version, dirty FROM ${session.qualified} LIMIT 1`,
      );
      const row = rows[0];
      if (!row) return { version: null, dirty: false };
      const version = Number(row.version);
      return { version: version === NIL_VERSION ? null : version, dirty: row.dirty };
    } catch (error) {
      if (tolerateMissingTable && (error as { code?: string }).code === '42P01') {
        return { version: null, dirty: false };
      }
      throw error;
    }
  }

  /**
   * golang-migrate's SetVersion: empty the table and insert the one row, atomically. Sent as one
   * simple query, which PostgreSQL runs as one implicit transaction. Version -1 that is not dirty
   * leaves the table empty.
   */
  async #setVersion(session: Session, version: number, dirty: boolean): Promise<void> {
    const insert =
      version >= 0 || dirty
        ? `; INSERT INTO ${session.qualified} (version, dirty) VALUES (${version}, ${dirty})`
        : '';
    await session.client.query(`TRUNCATE ${session.qualified}${insert}`);
  }

  async #step(
    session: Session,
    m: Migration,
    direction: 'up' | 'down',
    target: number,
    signal: AbortSignal | undefined,
  ): Promise<Applied> {
    throwIfAborted(signal);
    const file = m[direction] ?? null;
    const fileName = file ? path.basename(file) : `${m.version}_${m.name} (no ${direction} file)`;
    // Read before marking dirty, so an unreadable file does not leave the database dirty.
    const sql = file ? await readFile(file, 'utf8') : '';
    this.#log(`${direction === 'up' ? 'applying' : 'rolling back'} ${fileName}`);
    const started = performance.now();
    await this.#setVersion(session, target, true);
    if (sql.trim() !== '') {
      try {
        await session.client.query(sql);
      } catch (error) {
        // A file with its own BEGIN leaves the session in a failed transaction; end it so the
        // unlock that follows can run. The tracking row stays dirty: it was committed before.
        await session.client.query('ROLLBACK').catch(() => {});
        throw migrationFailed(fileName, sql, target, session.display, error);
      }
    }
    await this.#setVersion(session, target, false);
    const durationMs = Math.round(performance.now() - started);
    this.#log(`${m.version}/${direction === 'up' ? 'u' : 'd'} ${m.name} (${durationMs}ms)`);
    return { version: m.version, name: m.name, direction, file, durationMs };
  }

  async #connect(signal: AbortSignal | undefined): Promise<Session> {
    throwIfAborted(signal);
    const client = new pg.Client({
      connectionString: this.#options.connectionString,
      application_name: 'sluice-migrate',
    });
    // Without a listener, a backend dropped while this session is idle (a server restart, a
    // terminated backend) would be an unhandled 'error' event and crash the process; the
    // failure reaches the caller through its next query instead. (@sluice/db's session helper
    // does this for the services; it depends on this package, so it cannot be used here.)
    client.on('error', () => {});
    try {
      await client.connect();
      throwIfAborted(signal);
      const { rows } = await client.query<{ schema: string | null; db: string; pid: number }>(
        'SELECT current_schema() AS schema, current_database() AS db, pg_backend_pid() AS pid',
      );
      const info = rows[0] as { schema: string | null; db: string; pid: number };
      const schema = this.#options.schema ?? info.schema;
      if (schema === null) {
        throw new SluiceError(
          'FAILED_PRECONDITION',
          'No current schema (search_path names no existing schema): cannot place the migrations table',
          { reason: 'SLUICE_MIGRATION_NO_SCHEMA' },
        );
      }
      const database = databaseNameInUrl(this.#options.connectionString) ?? info.db;
      return {
        client,
        schema,
        table: this.#table,
        qualified: `${quoteIdent(schema)}.${quoteIdent(this.#table)}`,
        display: `${schema}.${this.#table}`,
        lockId: advisoryLockId(database, schema, this.#table),
        pid: info.pid,
      };
    } catch (error) {
      await client.end().catch(() => {});
      throw error;
    }
  }

  async #unlocked<T>(options: AbortOptions, fn: (session: Session) => Promise<T>): Promise<T> {
    const session = await this.#connect(options.signal);
    try {
      return await fn(session);
    } finally {
      await session.client.end().catch(() => {});
    }
  }

  async #locked<T>(
    options: AbortOptions,
    fn: (session: Session, migrations: Migration[]) => Promise<T>,
    needsFolder = true,
  ): Promise<T> {
    const { signal } = options;
    // Read the folder first: a missing or malformed folder fails before touching the database.
    const migrations = needsFolder ? await listMigrations(this.#options.dir) : [];
    const session = await this.#connect(signal);
    try {
      try {
        await this.#acquire(session, signal);
        await this.#ensureTable(session);
        return await fn(session, migrations);
      } finally {
        // Fails harmlessly when the lock was never taken; closing the session releases it anyway.
        await session.client.query('SELECT pg_advisory_unlock($1)', [session.lockId]).catch(() => {});
      }
    } finally {
      await session.client.end().catch(() => {});
    }
  }

  /** Waits for the advisory lock; an abort cancels the wait server-side (pg_cancel_backend). */
  async #acquire(session: Session, signal: AbortSignal | undefined): Promise<void> {
    throwIfAborted(signal);
    const onAbort = () => {
      void cancelBackend(this.#options.connectionString, session.pid);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      this.#log(`locking ${session.display} (pg_advisory_lock ${session.lockId})`);
      await session.client.query('SELECT pg_advisory_lock($1)', [session.lockId]);
    } catch (error) {
      if (signal?.aborted) throw abortError(signal);
      throw error;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
    // An abort that raced the grant: stop before the first migration.
    throwIfAborted(signal);
  }

  /** golang-migrate's ensureVersionTable: create only when missing, so read-only roles still work. */
  async #ensureTable(session: Session): Promise<void> {
    const { rows } = await session.client.query<{ n: string }>(
      'SELECT COUNT(1) AS n FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2',
      [session.schema, session.table],
    );
    if (Number(rows[0]?.n) === 1) return;
    await session.client.query(
      `CREATE TABLE IF NOT EXISTS ${session.qualified} (version bigint not null primary key, dirty boolean not null)`,
    );
  }
}

function migrationFailed(
  fileName: string,
  sql: string,
  version: number,
  table: string,
  error: unknown,
): SluiceError {
  const metadata: Record<string, string> = { file: fileName, version: String(version) };
  let detail: string;
  if (error instanceof pg.DatabaseError) {
    detail = error.message;
    if (error.code) metadata.sqlstate = error.code;
    const at = error.position ? lineAndColumn(sql, Number(error.position)) : undefined;
    if (at) {
      detail += ` (line ${at.line}, column ${at.column})`;
      metadata.line = String(at.line);
      metadata.column = String(at.column);
    }
    if (error.detail) detail += `; ${error.detail}`;
    if (error.hint) detail += `; hint: ${error.hint}`;
  } else {
    detail = error instanceof Error ? error.message : String(error);
  }
  return new SluiceError(
    'FAILED_PRECONDITION',
    `Migration ${fileName} failed: ${detail}. The database is left dirty at version ${version} (${table}); ` +
      `fix it by hand, then run "force <version>".`,
    { reason: 'SLUICE_MIGRATION_FAILED', metadata, cause: error },
  );
}
