import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { migrateAll, runSqlFile } from '@sluice/db';
import { type RunningPostgres, startEmbeddedPostgres, viaSocket } from '@sluice/embedded';
import {
  AUTHENTICATOR_PASSWORD,
  asAuthenticator,
  freePort,
  REFERENCE_MIGRATIONS_DIR,
  SEED_FILE,
  withDatabase,
} from '@sluice/testing';
import pg from 'pg';

export interface BenchDatabase {
  /** Superuser URL of the benchmark's own database. */
  readonly url: string;
  /** The same database as the service's login role, sluice_authenticator. */
  readonly appUrl: string;
  /** Where it runs, for the report. */
  readonly where: string;
  /** Drops the database and stops the embedded cluster, if one was started. */
  close(): Promise<void>;
}

/**
 * A fresh database for one benchmark run, migrated (core + reference) and seeded with the demo
 * data, sluice_authenticator given its password. On `adminUrl` (a superuser URL) when given,
 * otherwise on an embedded PostgreSQL in a temporary folder that `close` removes.
 *
 * @throws when PostgreSQL cannot be started or reached, or a migration fails.
 */
export async function createBenchDatabase(adminUrl: string | undefined): Promise<BenchDatabase> {
  let embedded: RunningPostgres | undefined;
  if (!adminUrl) {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'sluice-bench-pg-'));
    embedded = await startEmbeddedPostgres({ dataDir, port: await freePort(), persistent: false });
    adminUrl = embedded.url;
  }
  const name = `sluice_bench_${randomBytes(4).toString('hex')}`;
  try {
    await withClient(adminUrl, (c) => c.query(`create database ${name}`));
    const url = withDatabase(adminUrl, name);
    await migrateAll(url, { userDir: REFERENCE_MIGRATIONS_DIR });
    await runSqlFile(url, SEED_FILE);
    // Roles are cluster-wide: the same password the test cluster uses, so a shared cluster
    // (SLUICE_TEST_DATABASE_URL) keeps working for the tests.
    await withClient(url, (c) =>
      c.query(`alter role sluice_authenticator password '${AUTHENTICATOR_PASSWORD}'`),
    );
    const admin = adminUrl;
    return {
      url,
      // Like npm start: the service reaches the embedded server through its Unix socket.
      appUrl: embedded ? viaSocket(asAuthenticator(url), embedded.socketDir) : asAuthenticator(url),
      where: embedded
        ? `embedded PostgreSQL on port ${embedded.port}`
        : `${redact(admin)} (database ${name})`,
      async close() {
        try {
          await withClient(admin, (c) => c.query(`drop database if exists ${name} with (force)`));
        } finally {
          await embedded?.stop();
        }
      },
    };
  } catch (error) {
    await embedded?.stop();
    throw error;
  }
}

/** Runs `fn` with a fresh connection, closed afterwards. */
export async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

function redact(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = '***';
  return u.toString();
}
