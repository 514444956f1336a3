import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type RunningPostgres, startEmbeddedPostgres } from '@sluice/embedded';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { chooseTestDatabase, detectDockerEngine } from './container-runtime';
import { prepareTemplate } from './template';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Superuser URL of the test cluster's maintenance database. */
    pgAdminUrl: string;
    /** Name of the migrated template database each test file clones. */
    pgTemplate: string;
  }
}

/** A free loopback TCP port, found by binding port 0. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

let embedded: RunningPostgres | undefined;
let container: { stop(): Promise<unknown> } | undefined;

/** One line on stderr, once per run: which PostgreSQL the tests use and why. */
const say = (line: string) => process.stderr.write(`[sluice tests] ${line}\n`);

/**
 * Vitest global setup: one PostgreSQL for the whole run and one migrated template database that
 * every test file clones. Which PostgreSQL (see chooseTestDatabase):
 * - SLUICE_TEST_DATABASE_URL: that server (a superuser URL);
 * - SLUICE_TEST_POSTGRES_IMAGE (say postgres:16): a Testcontainers container of that image when
 *   a Docker engine answers, and a failed run when none does;
 * - otherwise an embedded PostgreSQL in a temporary folder (no Docker needed), said once on
 *   stderr.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const env = process.env;
  // The engine is probed even when no image is asked for, so the run can say why it uses the
  // embedded server (a missing socket fails at once; a silent DOCKER_HOST costs the timeout).
  const choice = chooseTestDatabase(
    env,
    env.SLUICE_TEST_DATABASE_URL ? { tried: [] } : await detectDockerEngine(env),
  );
  let adminUrl: string;
  if (choice.kind === 'external') {
    adminUrl = choice.url;
    say(
      `tests use SLUICE_TEST_DATABASE_URL (${redact(adminUrl)}), PostgreSQL ${await serverVersion(adminUrl)}`,
    );
  } else if (choice.kind === 'container') {
    // Testcontainers finds the engine itself; point it at the one that answered the probe.
    env.DOCKER_HOST ??= choice.engine.dockerHost;
    const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
    const started = await new PostgreSqlContainer(choice.image)
      .withDatabase('postgres')
      .withUsername('postgres')
      .withPassword('sluice-test')
      // The same throwaway speed settings as the embedded test server.
      .withCommand(['postgres', '-c', 'max_connections=300', ...THROWAWAY_SETTINGS])
      .start();
    container = started;
    adminUrl = started.getConnectionUri();
    say(
      `tests use a ${choice.image} container (Testcontainers, engine ${choice.engine.dockerHost}), PostgreSQL ${await serverVersion(adminUrl)}`,
    );
  } else {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'sluice-test-pg-'));
    embedded = await startEmbeddedPostgres({ dataDir, port: await freePort(), persistent: false });
    adminUrl = embedded.url;
    say(choice.notice);
  }
  const template = await prepareTemplate(adminUrl);
  project.provide('pgAdminUrl', adminUrl);
  project.provide('pgTemplate', template);
  return async () => {
    await embedded?.stop();
    await container?.stop();
  };
}

const THROWAWAY_SETTINGS = ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'];

function redact(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = '***';
  return u.toString();
}

async function serverVersion(url: string): Promise<string> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ server_version: string }>('show server_version');
    return rows[0]?.server_version ?? 'unknown';
  } finally {
    await client.end();
  }
}
