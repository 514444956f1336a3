import pg from 'pg';

export const TEMPLATE_DB = 'sluice_test_template';

/**
 * Creates the template database every test file clones, freshly, and migrates it.
 * Migration is wired in once the migrate package exists (see TODO below).
 */
export async function prepareTemplate(adminUrl: string): Promise<string> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${TEMPLATE_DB} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${TEMPLATE_DB}`);
  } finally {
    await admin.end();
  }
  return TEMPLATE_DB;
}
