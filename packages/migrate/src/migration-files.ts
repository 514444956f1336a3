import { mkdir, open, readdir } from 'node:fs/promises';
import path from 'node:path';
import { SluiceError } from '@sluice/core';
import { badArgument, notFound } from './errors';

/** One version of a migrations folder: its up and/or down file (absolute paths). */
export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly up?: string;
  readonly down?: string;
}

/** A file name golang-migrate's `source.Parse` accepts. */
export interface ParsedFileName {
  readonly version: number;
  readonly name: string;
  readonly direction: 'up' | 'down';
}

// golang-migrate source.DefaultParse: `^([0-9]+)_(.*)\.(down|up)\.(.*)$` (any extension).
const FILE_NAME = /^([0-9]+)_(.*)\.(down|up)\.(.*)$/s;
const MIGRATION_NAME = /^[a-z0-9_]+$/;

/**
 * Parses a migration file name as golang-migrate does; undefined when the name does not match
 * (golang-migrate skips such files). Throws INVALID_ARGUMENT for a version beyond 2^53, which
 * this runner cannot represent exactly.
 */
export function parseMigrationFileName(fileName: string): ParsedFileName | undefined {
  const m = FILE_NAME.exec(fileName);
  if (!m) return undefined;
  const version = Number(m[1]);
  if (!Number.isSafeInteger(version)) {
    throw badArgument(`Migration file ${fileName}: version ${m[1]} is too large`, 'version');
  }
  return { version, name: m[2] ?? '', direction: m[3] as 'up' | 'down' };
}

/**
 * Lists the migrations of `dir`, sorted by version. Files whose names do not parse are ignored,
 * like golang-migrate does. Throws NOT_FOUND when the folder is missing and INVALID_ARGUMENT
 * when two files claim the same version and direction.
 */
export async function listMigrations(dir: string): Promise<Migration[]> {
  let entries: import('node:fs').Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw notFound(`Migrations folder ${dir} does not exist`, { dir });
    }
    throw error;
  }
  const byVersion = new Map<number, { version: number; name: string; up?: string; down?: string }>();
  for (const entry of entries) {
    if (entry.isDirectory()) continue;
    const parsed = parseMigrationFileName(entry.name);
    if (!parsed) continue;
    const file = path.resolve(dir, entry.name);
    const existing = byVersion.get(parsed.version) ?? { version: parsed.version, name: parsed.name };
    if (existing[parsed.direction] !== undefined) {
      throw badArgument(
        `Duplicate migration file: ${entry.name} and ${path.basename(existing[parsed.direction] as string)} ` +
          `are both version ${parsed.version} ${parsed.direction}`,
        'dir',
      );
    }
    existing[parsed.direction] = file;
    byVersion.set(parsed.version, existing);
  }
  return [...byVersion.values()].sort((a, b) => a.version - b.version);
}

/**
 * Creates the next sequential pair `NNNNNN_name.up.sql` / `.down.sql` in `dir` (creating the folder
 * if needed), like `migrate create -ext sql -dir DIR -seq -digits 6 NAME`. Both files start empty.
 * Throws INVALID_ARGUMENT for a name outside `[a-z0-9_]+`, ALREADY_EXISTS when a file is in the way.
 */
export async function createMigration(dir: string, name: string): Promise<{ up: string; down: string }> {
  if (!MIGRATION_NAME.test(name)) {
    throw badArgument(`Migration name "${name}" must match [a-z0-9_]+`, 'name');
  }
  await mkdir(dir, { recursive: true });
  const existing = await listMigrations(dir);
  const next = (existing.at(-1)?.version ?? 0) + 1;
  const digits = String(next).padStart(6, '0');
  if (digits.length > 6) {
    throw badArgument(`Next sequence number ${digits} is longer than 6 digits`, 'name');
  }
  const up = path.resolve(dir, `${digits}_${name}.up.sql`);
  const down = path.resolve(dir, `${digits}_${name}.down.sql`);
  for (const file of [up, down]) {
    try {
      // 'wx' fails when the file exists, as golang-migrate's O_EXCL does.
      const handle = await open(file, 'wx');
      await handle.close();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new SluiceError('ALREADY_EXISTS', `Migration file ${file} already exists`, {
          reason: 'SLUICE_MIGRATION_EXISTS',
        });
      }
      throw error;
    }
  }
  return { up, down };
}
