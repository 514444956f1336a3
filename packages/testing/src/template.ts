import { fileURLToPath } from 'node:url';
import { migrateAll, runSqlFile } from '@sluice/db';
import pg from 'pg';
import { AUTHENTICATOR_PASSWORD, withDatabase } from './urls';

export const TEMPLATE_DB = 'sluice_test_template';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const REFERENCE_MIGRATIONS_DIR = `${ROOT}migrations`;
export const SEED_FILE = `${ROOT}db/seed.sql`;

/**
 * Creates, freshly, the template database every test file clones: core and reference
 * migrations applied and the demo seed loaded. Test files then get their own copy in
 * milliseconds (CREATE DATABASE … TEMPLATE).
 */
export async function prepareTemplate(adminUrl: string): Promise<string> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`drop database if exists ${TEMPLATE_DB} with (force)`);
    await admin.query(`create database ${TEMPLATE_DB}`);
  } finally {
    await admin.end();
  }
  const url = withDatabase(adminUrl, TEMPLATE_DB);
  await migrateAll(url, { userDir: REFERENCE_MIGRATIONS_DIR });
  await runSqlFile(url, SEED_FILE);
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(`alter role sluice_authenticator password '${AUTHENTICATOR_PASSWORD}'`);
  } finally {
    await c.end();
  }
  return TEMPLATE_DB;
}
