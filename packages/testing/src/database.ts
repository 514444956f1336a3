import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { asAuthenticator, withDatabase } from './urls';

export interface TestDatabase {
  /** Superuser URL of this test file's own database. */
  readonly url: string;
  readonly name: string;
  /** URL of the same database as the service's login role (sluice_authenticator): never a superuser. */
  readonly appUrl: string;
  /** Drops the database (forcing out any connection left behind). */
  drop(): Promise<void>;
}

/**
 * A database of the test file's own, cloned from the migrated template (fast: a file copy).
 * Call in `beforeAll` and drop it in `afterAll`.
 */
export async function createTestDatabase(options: { empty?: boolean } = {}): Promise<TestDatabase> {
  const adminUrl = inject('pgAdminUrl');
  const template = options.empty ? 'template0' : inject('pgTemplate');
  const name = `sluice_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name} TEMPLATE ${template}`);
  } finally {
    await admin.end();
  }
  return {
    name,
    url: withDatabase(adminUrl, name),
    appUrl: asAuthenticator(withDatabase(adminUrl, name)),
    async drop() {
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}
