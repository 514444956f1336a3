import path from 'node:path';
import { type Env, isSluiceError } from '@sluice/core';
import { badArgument } from './errors';
import { createMigration } from './migration-files';
import { type Applied, Migrator } from './migrator';

/** A database to migrate, and how to let go of it when the command is done. */
export interface DatabaseTarget {
  readonly url: string;
  /** Called once the command finishes (e.g. to stop an embedded PostgreSQL started for it). */
  readonly close?: () => Promise<void>;
}

/**
 * Where the CLI migrates: `--database URL`, else `MIGRATE_DATABASE_URL` (the owner's URL, as the
 * launcher uses it), else `DATABASE_URL`. This is the hook for falling back to the embedded
 * PostgreSQL when none is set; today it throws INVALID_ARGUMENT saying so.
 */
export async function resolveDatabaseUrl(flag: string | undefined, env: Env): Promise<DatabaseTarget> {
  const url = flag ?? (env.MIGRATE_DATABASE_URL || undefined) ?? env.DATABASE_URL;
  if (url) return { url };
  throw badArgument(
    'No database to migrate: DATABASE_URL is not set (nor MIGRATE_DATABASE_URL). Set it (e.g. DATABASE_URL=postgres://user:pass@localhost:5432/app) or pass --database URL.',
    'database',
  );
}

/** Brings a database fully up to date for `up` with no N (see {@link RunCliOptions.upAll}). */
export type UpAll = (
  url: string,
  options: { readonly dir: string; readonly signal?: AbortSignal; readonly log: (line: string) => void },
) => Promise<Applied[]>;

export interface RunCliOptions {
  readonly env: Env;
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
  /** Folder that a relative `--path` is resolved against; default `process.cwd()`. */
  readonly cwd?: string;
  readonly signal?: AbortSignal;
  /** Replaces `resolveDatabaseUrl` (e.g. to start an embedded database). */
  readonly resolveDatabase?: (flag: string | undefined, env: Env) => Promise<DatabaseTarget>;
  /**
   * What `up` with no N (and the default tracking table) runs instead of the folder's migrator:
   * the release step of an application that needs more than the folder, e.g. Sluice's core schema
   * first (`migrateAll` of @sluice/db, wired by `npm run migrate`). Migrations it applies from
   * other folders are printed with a `core ` prefix. Other verbs act on the folder alone.
   */
  readonly upAll?: UpAll;
}

export const USAGE = `Usage: migrate [--database URL] [--path DIR] [--table NAME] <verb> [args]

Verbs:
  up [N]        apply all or the next N pending migrations (all, from npm run migrate or
                dist/migrate.js: Sluice's core schema first, then the folder)
  down [N|-all] roll back N migrations, or all of them when N is omitted
  goto V        migrate up or down to version V
  force V       set the version (V may be -1) and clear the dirty flag, running nothing
  version       print the current version
  create NAME   create the next NNNNNN_NAME.up.sql / .down.sql pair ([a-z0-9_]+)

Options (also accepted with one dash, golang-migrate style, and as --flag=value):
  --database URL  PostgreSQL URL (default: MIGRATE_DATABASE_URL, else DATABASE_URL)
  --path DIR      migrations folder (default: MIGRATIONS_DIR, else ./migrations)
  --table NAME    tracking table (default: schema_migrations)`;

interface ParsedArgs {
  database?: string;
  path: string;
  table?: string;
  all: boolean;
  help: boolean;
  positional: string[];
}

const VALUE_FLAGS = new Set(['database', 'path', 'table']);

function parseArgs(argv: readonly string[], defaultPath: string): ParsedArgs {
  const parsed: ParsedArgs = { path: defaultPath, all: false, help: false, positional: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    // A bare negative number is a value (force -1), not a flag.
    if (!arg.startsWith('-') || /^-\d+$/.test(arg)) {
      parsed.positional.push(arg);
      continue;
    }
    const body = arg.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const name = eq < 0 ? body : body.slice(0, eq);
    if (name === 'all') parsed.all = true;
    else if (name === 'help' || name === 'h') parsed.help = true;
    else if (VALUE_FLAGS.has(name)) {
      const value = eq < 0 ? argv[++i] : body.slice(eq + 1);
      if (value === undefined || value === '') throw badArgument(`--${name} needs a value`, name);
      if (name === 'database') parsed.database = value;
      else if (name === 'path') parsed.path = value;
      else parsed.table = value;
    } else {
      throw badArgument(`Unknown option ${arg}`, name);
    }
  }
  return parsed;
}

function parseInteger(text: string | undefined, what: string): number {
  if (text === undefined || !/^-?\d+$/.test(text) || !Number.isSafeInteger(Number(text))) {
    throw badArgument(`${what} must be an integer, got ${text ?? 'nothing'}`, what);
  }
  return Number(text);
}

function describe(applied: readonly Applied[]): string[] {
  if (applied.length === 0) return ['no change'];
  return applied.map((a) => `${a.version}/${a.direction === 'up' ? 'u' : 'd'} ${a.name} (${a.durationMs}ms)`);
}

async function runVerb(
  migrator: Migrator,
  verb: string,
  arg: string | undefined,
  all: boolean,
  signal: { signal?: AbortSignal },
): Promise<string[]> {
  switch (verb) {
    case 'up':
      return describe(await migrator.up(arg === undefined ? undefined : parseInteger(arg, 'N'), signal));
    case 'down':
      if (all && arg !== undefined) throw badArgument('down takes N or -all, not both', 'N');
      return describe(await migrator.down(arg === undefined ? undefined : parseInteger(arg, 'N'), signal));
    case 'goto':
      return describe(await migrator.goto(parseInteger(arg, 'V'), signal));
    case 'force': {
      const v = parseInteger(arg, 'V');
      await migrator.force(v, signal);
      return [`forced version ${v}`];
    }
    default: {
      const { version, dirty } = await migrator.version(signal);
      if (version === null && !dirty) return ['no migration'];
      return [`${version ?? -1}${dirty ? ' (dirty)' : ''}`];
    }
  }
}

/**
 * Runs one migrate CLI command and returns its exit code: 0 on success, 1 with the error's message
 * on `err` otherwise (a non-Sluice error also prints its stack, being a bug rather than a usage error).
 * Cancellation: `signal` stops between migrations.
 */
export async function runCli(argv: readonly string[], options: RunCliOptions): Promise<number> {
  const { out, err } = options;
  try {
    const args = parseArgs(argv, options.env.MIGRATIONS_DIR || './migrations');
    const [verb, ...rest] = args.positional;
    if (args.help || verb === undefined || verb === 'help') {
      out(USAGE);
      return verb === undefined && !args.help ? 1 : 0;
    }
    const dir = path.resolve(options.cwd ?? process.cwd(), args.path);
    const expectArgs = (max: number) => {
      if (rest.length > max) throw badArgument(`Too many arguments for ${verb}: ${rest.join(' ')}`, verb);
    };

    if (verb === 'create') {
      expectArgs(1);
      const created = await createMigration(dir, rest[0] ?? '');
      out(created.up);
      out(created.down);
      return 0;
    }
    if (!['up', 'down', 'goto', 'force', 'version'].includes(verb)) {
      throw badArgument(`Unknown verb "${verb}"\n${USAGE}`, 'verb');
    }

    expectArgs(1);
    const resolve = options.resolveDatabase ?? resolveDatabaseUrl;
    const target = await resolve(args.database, options.env);
    try {
      const migrator = new Migrator({
        connectionString: target.url,
        dir,
        ...(args.table ? { table: args.table } : {}),
      });
      const signal = options.signal ? { signal: options.signal } : {};
      if (options.upAll && verb === 'up' && rest[0] === undefined && !args.table) {
        const applied = await options.upAll(target.url, { dir, ...signal, log: () => {} });
        const lines = describe(applied);
        for (const [i, a] of applied.entries()) {
          if (a.file && path.dirname(a.file) !== dir) lines[i] = `core ${lines[i]}`;
        }
        for (const line of lines) out(line);
        return 0;
      }
      for (const line of await runVerb(migrator, verb, rest[0], args.all, signal)) out(line);
      return 0;
    } finally {
      await target.close?.();
    }
  } catch (error) {
    if (isSluiceError(error)) {
      err(`error: ${error.message}`);
    } else {
      err(`error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    }
    return 1;
  }
}
