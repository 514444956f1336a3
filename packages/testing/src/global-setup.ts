import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type RunningPostgres, startEmbeddedPostgres } from '@sluice/embedded';
import type { TestProject } from 'vitest/node';
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

/**
 * Vitest global setup: one PostgreSQL for the whole run — SLUICE_TEST_DATABASE_URL when set
 * (a superuser URL; used to prove compatibility with other versions), otherwise an embedded
 * PostgreSQL in a temporary folder — and one migrated template database that every test file
 * clones. Docker is not required (Testcontainers is not used: no engine runs on CI machines).
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let adminUrl = process.env.SLUICE_TEST_DATABASE_URL;
  if (!adminUrl) {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'sluice-test-pg-'));
    embedded = await startEmbeddedPostgres({ dataDir, port: await freePort(), persistent: false });
    adminUrl = embedded.url;
  }
  const template = await prepareTemplate(adminUrl);
  project.provide('pgAdminUrl', adminUrl);
  project.provide('pgTemplate', template);
  return async () => {
    await embedded?.stop();
  };
}
