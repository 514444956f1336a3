import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createMigration, listMigrations, parseMigrationFileName } from '../src/migration-files';

const fixtures = path.join(import.meta.dirname, 'fixtures');
const temps: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'sluice-migrate-'));
  temps.push(dir);
  return dir;
}
afterEach(async () => {
  for (const dir of temps.splice(0)) await rm(dir, { recursive: true, force: true });
});

describe('parseMigrationFileName', () => {
  it("accepts golang-migrate's pattern with any unsigned version and extension", () => {
    expect(parseMigrationFileName('000001_init.up.sql')).toEqual({
      version: 1,
      name: 'init',
      direction: 'up',
    });
    expect(parseMigrationFileName('20240101120000_add_x.down.txt')).toEqual({
      version: 20240101120000,
      name: 'add_x',
      direction: 'down',
    });
    expect(parseMigrationFileName('7_.up.sql')).toEqual({ version: 7, name: '', direction: 'up' });
  });

  it('ignores names that do not match', () => {
    for (const name of [
      'README.md',
      'init.up.sql',
      '-1_x.up.sql',
      '1_x.sideways.sql',
      '1_x.up',
      'x1_a.up.sql',
    ]) {
      expect(parseMigrationFileName(name)).toBeUndefined();
    }
  });

  it('rejects versions it cannot represent exactly', () => {
    expect(() => parseMigrationFileName('99999999999999999999_x.up.sql')).toThrow(/too large/);
  });
});

describe('listMigrations', () => {
  it('pairs up and down files by version, sorted, skipping other files', async () => {
    const list = await listMigrations(path.join(fixtures, 'basic'));
    expect(list.map((m) => [m.version, m.name])).toEqual([
      [1, 'create_items'],
      [2, 'add_color'],
      [3, 'create_tags'],
    ]);
    expect(path.basename(list[1]?.up ?? '')).toBe('000002_add_color.up.sql');
    expect(path.basename(list[1]?.down ?? '')).toBe('000002_add_color.down.sql');
  });

  it('sorts numerically, not by name', async () => {
    const dir = await tempDir();
    for (const f of ['10_b.up.sql', '9_a.up.sql', '100_c.up.sql']) await writeFile(path.join(dir, f), '');
    expect((await listMigrations(dir)).map((m) => m.version)).toEqual([9, 10, 100]);
  });

  it('rejects two files with the same version and direction', async () => {
    const dir = await tempDir();
    await writeFile(path.join(dir, '1_a.up.sql'), '');
    await writeFile(path.join(dir, '01_b.up.sql'), '');
    await expect(listMigrations(dir)).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: /Duplicate/,
    });
  });

  it('reports a missing folder as NOT_FOUND', async () => {
    await expect(listMigrations(path.join(fixtures, 'nope'))).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });
});

describe('createMigration', () => {
  it('creates sequential 6-digit up/down pairs, creating the folder', async () => {
    const dir = path.join(await tempDir(), 'migrations');
    const first = await createMigration(dir, 'create_users');
    expect(path.basename(first.up)).toBe('000001_create_users.up.sql');
    expect(path.basename(first.down)).toBe('000001_create_users.down.sql');
    const second = await createMigration(dir, 'add_email');
    expect(path.basename(second.up)).toBe('000002_add_email.up.sql');
    expect((await readdir(dir)).sort()).toEqual([
      '000001_create_users.down.sql',
      '000001_create_users.up.sql',
      '000002_add_email.down.sql',
      '000002_add_email.up.sql',
    ]);
    expect(await readFile(second.up, 'utf8')).toBe('');
  });

  it('continues after the highest existing version', async () => {
    const dir = await tempDir();
    await writeFile(path.join(dir, '000007_seven.up.sql'), 'select 1');
    const created = await createMigration(dir, 'eight');
    expect(path.basename(created.up)).toBe('000008_eight.up.sql');
  });

  it('validates the name', async () => {
    const dir = await tempDir();
    for (const bad of ['', 'Bad', 'has-dash', 'a b', '../escape']) {
      await expect(createMigration(dir, bad)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    }
    expect(await readdir(dir)).toEqual([]);
  });
});
