// Regenerates db/schema.ts (the sqlc analogue: Kysely types for the whole reference database)
// with kysely-codegen, and packages/db/core-schema.md (a description of Sluice's core schema),
// from a fresh embedded PostgreSQL migrated with core + migrations/.
// `--verify` checks the committed files instead of writing them (npm run check uses this).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { migrateAll } from '@sluice/db';
import { startEmbeddedPostgres } from '@sluice/embedded';
import { freePort } from '@sluice/testing';
import { describeCoreSchema } from './describe-core-schema';

const root = fileURLToPath(new URL('../', import.meta.url));
const verify = process.argv.includes('--verify');
const dataDir = mkdtempSync(path.join(tmpdir(), 'sluice-codegen-'));
const pg = await startEmbeddedPostgres({ dataDir, port: await freePort(), persistent: false });
try {
  await migrateAll(pg.url, { userDir: path.join(root, 'migrations') });
  const coreSchemaFile = path.join(root, 'packages/db/core-schema.md');
  const description = await describeCoreSchema(pg.url);
  if (!verify) writeFileSync(coreSchemaFile, description);
  else if (readFileSync(coreSchemaFile, 'utf8') !== description) {
    process.stderr.write('packages/db/core-schema.md is stale: run npm run generate\n');
    process.exitCode = 1;
  }
  execFileSync(
    path.join(root, 'node_modules/.bin/kysely-codegen'),
    [
      '--dialect',
      'postgres',
      '--url',
      pg.url,
      '--out-file',
      path.join(root, 'db/schema.ts'),
      '--include-pattern',
      'public.*',
      '--exclude-pattern',
      '*schema_migrations',
      '--numeric-parser',
      'string',
      '--log-level',
      'error',
      ...(verify ? ['--verify'] : []),
    ],
    { stdio: 'inherit' },
  );
} catch (error) {
  if (verify) process.stderr.write('db/schema.ts is stale: run npm run generate\n');
  process.exitCode = 1;
  if (!verify) throw error;
} finally {
  await pg.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
