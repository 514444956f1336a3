import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { createTestDatabase, type TestDatabase } from '@sluice/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../src/run-cli';

const fixtures = path.join(import.meta.dirname, 'fixtures');
const root = path.resolve(import.meta.dirname, '../../..');
let db: TestDatabase;
let other: TestDatabase;
let scratch: string;

beforeAll(async () => {
  db = await createTestDatabase({ empty: true });
  other = await createTestDatabase({ empty: true });
  scratch = await mkdtemp(path.join(tmpdir(), 'sluice-migrate-cli-'));
});
afterAll(async () => {
  await db?.drop();
  await other?.drop();
  await rm(scratch, { recursive: true, force: true });
});

async function cli(argv: string[], env: Record<string, string | undefined> = { DATABASE_URL: db.url }) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(argv, { env, out: (l) => out.push(l), err: (l) => err.push(l), cwd: fixtures });
  return { code, out, err };
}

describe('runCli', () => {
  it('runs the verbs against DATABASE_URL and prints what it did', async () => {
    expect(await cli(['version', '--path', 'basic'])).toEqual({ code: 0, out: ['no migration'], err: [] });
    const up = await cli(['up', '2', '--path', 'basic']);
    expect(up.code).toBe(0);
    expect(up.out).toEqual([
      expect.stringMatching(/^1\/u create_items \(\d+ms\)$/),
      expect.stringMatching(/^2\/u add_color/),
    ]);
    expect((await cli(['version', '--path=basic'])).out).toEqual(['2']);
    expect((await cli(['-path', 'basic', 'goto', '3'])).out).toEqual([
      expect.stringMatching(/^3\/u create_tags/),
    ]);
    expect((await cli(['up', '--path', 'basic'])).out).toEqual(['no change']);
    expect((await cli(['down', '1', '--path', 'basic'])).out).toEqual([
      expect.stringMatching(/^3\/d create_tags/),
    ]);
    expect((await cli(['force', '-1', '--path', 'basic'])).out).toEqual(['forced version -1']);
    expect((await cli(['version', '--path', 'basic'])).out).toEqual(['no migration']);
    await cli(['force', '2', '--path', 'basic']);
    expect((await cli(['down', '-all', '--path', 'basic'])).out).toHaveLength(2);
  });

  it('takes --database and --table over the environment', async () => {
    const r = await cli(['--database', db.url, '--table', 'cli_table', '--path', 'broken', 'up', '1'], {});
    expect(r).toMatchObject({ code: 0, out: [expect.stringMatching(/^1\/u ok/)] });
    expect((await cli(['version', '--table=cli_table', '--path', 'broken'])).out).toEqual(['1']);
  });

  it('shows a dirty version and the refusal', async () => {
    const env = { DATABASE_URL: other.url };
    const failed = await cli(['up', '--path', 'broken'], env);
    expect(failed.code).toBe(1);
    expect(failed.err[0]).toMatch(
      /^error: Migration 000002_broken\.up\.sql failed: relation "missing_table"/,
    );
    expect((await cli(['version', '--path', 'broken'], env)).out).toEqual(['2 (dirty)']);
    const refused = await cli(['up', '--path', 'broken'], env);
    expect(refused).toMatchObject({ code: 1, err: [expect.stringMatching(/dirty at version 2/)] });
  });

  it('says clearly when there is no database', async () => {
    const r = await cli(['up', '--path', 'basic'], {});
    expect(r.code).toBe(1);
    expect(r.err[0]).toMatch(/DATABASE_URL is not set/);
  });

  it('rejects unknown verbs, options and bad numbers', async () => {
    expect((await cli(['sideways'])).err[0]).toMatch(/Unknown verb "sideways"/);
    expect((await cli(['up', '--nope'])).err[0]).toMatch(/Unknown option --nope/);
    expect((await cli(['up', 'x', '--path', 'basic'])).err[0]).toMatch(/N must be an integer/);
    expect((await cli(['goto', '--path', 'basic'])).code).toBe(1);
    expect((await cli(['version', '--path', 'nowhere'])).code).toBe(0);
    expect((await cli(['up', '--path', 'nowhere'])).err[0]).toMatch(/does not exist/);
  });

  it('creates sequential files without a database', async () => {
    const dir = path.join(scratch, 'migrations');
    expect((await cli(['create', 'first', '--path', dir], {})).code).toBe(0);
    const second = await cli(['create', 'second_one', '--path', dir], {});
    expect(second.out).toEqual([
      path.join(dir, '000002_second_one.up.sql'),
      path.join(dir, '000002_second_one.down.sql'),
    ]);
    expect((await readdir(dir)).length).toBe(4);
    expect((await cli(['create', 'Bad-Name', '--path', dir], {})).err[0]).toMatch(/must match \[a-z0-9_\]\+/);
  });
});

describe('npm run migrate entry point', () => {
  it('exits 1 with a clear message when DATABASE_URL is not set, 0 when it is', async () => {
    const run = promisify(execFile);
    const tsx = path.join(root, 'node_modules/.bin/tsx');
    const args = [
      path.join(root, 'packages/migrate/src/cli.ts'),
      'version',
      '--path',
      path.join(fixtures, 'basic'),
    ];
    const { DATABASE_URL: _, ...env } = process.env;
    const failed = await run(tsx, args, { env }).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(failed?.code).toBe(1);
    expect(failed?.stderr).toMatch(/DATABASE_URL is not set/);
    const ok = await run(tsx, [...args, '--table', 'entry_table'], { env: { ...env, DATABASE_URL: db.url } });
    expect(ok.stdout).toBe('no migration\n');
  });
});
