import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { createTestDatabase, freePort, REFERENCE_MIGRATIONS_DIR, type TestDatabase } from '@sluice/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// The production build (issue 8, part 6): `npm run build` output runs with plain node, no tsx —
// the release command migrates a fresh database, the launcher serves it and answers the ops
// endpoints, and SIGTERM drains and stops it. Built into a folder of its own (scripts/build.ts
// --outdir) under node_modules/.cache, so a developer's dist/ is left alone and the bundle still
// finds node_modules by walking up, as dist/ does.

const root = path.resolve(import.meta.dirname, '..');
const run = promisify(execFile);
const tsx = path.join(root, 'node_modules/.bin/tsx');
let out: string;
let db: TestDatabase;

beforeAll(async () => {
  const cache = path.join(root, 'node_modules/.cache');
  await mkdir(cache, { recursive: true });
  out = await mkdtemp(path.join(cache, 'sluice-build-'));
  await run(tsx, [path.join(root, 'scripts/build.ts'), '--outdir', out], { cwd: root });
  db = await createTestDatabase({ empty: true });
}, 120_000);
afterAll(async () => {
  await db?.drop();
  if (out) await rm(out, { recursive: true, force: true });
});

/** The environment of a production process: nothing of this test process's but PATH. */
function productionEnv(extra: Record<string, string>): Record<string, string> {
  return { PATH: process.env.PATH ?? '', NODE_ENV: 'production', SLUICE_ENV: 'test', ...extra };
}

async function waitForReady(url: string, child: ChildProcess, log: () => string): Promise<void> {
  const until = Date.now() + 45_000;
  while (Date.now() < until) {
    if (child.exitCode !== null) throw new Error(`the launcher exited (${child.exitCode}):\n${log()}`);
    const ok = await fetch(url).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`not ready within 45 s:\n${log()}`);
}

describe('npm run build', () => {
  it('writes the entries and lists the runtime files the image must copy', async () => {
    const assets = JSON.parse(await readFile(path.join(out, 'assets.json'), 'utf8')) as { files: string[] };
    expect(assets.files).toEqual(
      expect.arrayContaining(['packages/db/migrations', 'packages/proto/src/gen/sluice.binpb', 'migrations']),
    );
    const main = await readFile(path.join(out, 'main.js'), 'utf8');
    // Workspace packages are bundled; npm packages stay imports of node_modules.
    expect(main).not.toMatch(/from ["']@sluice\//);
    expect(main).toMatch(/from ["']@grpc\/grpc-js["']/);
  });

  it('node dist/migrate.js up: core schema then the application on a fresh database, then no change', async () => {
    const env = productionEnv({ MIGRATE_DATABASE_URL: db.url, MIGRATIONS_DIR: REFERENCE_MIGRATIONS_DIR });
    const first = await run(process.execPath, ['--enable-source-maps', path.join(out, 'migrate.js'), 'up'], {
      env,
      cwd: root,
    });
    expect(first.stdout).toMatch(/^core 1\/u roles \(\d+ms\)\n/);
    expect(first.stdout).toMatch(/\n1\/u tenancy \(\d+ms\)\n/);
    const second = await run(process.execPath, [path.join(out, 'migrate.js'), 'up'], { env, cwd: root });
    expect(second.stdout).toBe('no change\n');
  });

  it('node --import dist/register.js dist/main.js serves the database, answers the ops endpoints, drains on SIGTERM', async () => {
    const ops = `127.0.0.1:${await freePort()}`;
    const child = spawn(
      process.execPath,
      [
        '--enable-source-maps',
        '--experimental-async-context-frame',
        '--import',
        path.join(out, 'register.js'),
        path.join(out, 'main.js'),
      ],
      {
        cwd: root,
        env: productionEnv({
          DATABASE_URL: db.appUrl,
          JWT_SECRET: 'production-build-test-secret-0123456789',
          DATA_GRPC_ADDRESS: '127.0.0.1:0',
          EVENTS_GRPC_ADDRESS: '127.0.0.1:0',
          WEBHOOKS_GRPC_ADDRESS: '127.0.0.1:0',
          WEBHOOKS_HTTP_ADDRESS: '127.0.0.1:0',
          OPS_HTTP_ADDRESS: ops,
          MIGRATE_ON_START: 'false',
          SEED_DEMO_DATA: 'false',
          MIGRATIONS_DIR: REFERENCE_MIGRATIONS_DIR,
          SHUTDOWN_GRACE_MS: '2000',
        }),
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let output = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await waitForReady(`http://${ops}/readyz`, child, () => output);
      expect(await (await fetch(`http://${ops}/healthz`)).text()).toBe('ok\n');
      expect(await (await fetch(`http://${ops}/metrics`)).text()).toMatch(
        /^process_cpu_user_seconds_total /m,
      );
      expect(output).toMatch(/"msg":"data service listening"/);
      expect(output).toMatch(/"msg":"events service listening"/);
      expect(output).not.toMatch(/"level":"(error|fatal)"/);

      child.kill('SIGTERM');
      const code = await exited;
      // A graceful stop: the services drain and stop, then the process exits 0 by itself (not
      // killed by the signal, which would cut running calls and lose buffered logs and spans).
      expect(output).toMatch(/"msg":"shutting down"/);
      expect({ code, output }).toMatchObject({
        code: 0,
        output: expect.stringMatching(/data service stopped/),
      });
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
