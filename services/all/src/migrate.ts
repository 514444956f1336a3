import { runReleaseCli } from '@sluice/db';

/**
 * The release command: `npm run migrate -- <verb>` and, in the image, `node dist/migrate.js up`
 * (fly.toml's release_command). The golang-migrate compatible CLI, whose `up` brings the whole
 * database current the way the launcher does: Sluice's core schema, then the application's
 * migrations folder (--path, else MIGRATIONS_DIR, else ./migrations), then the grants, under one
 * advisory lock, so racing releases apply each migration once. The database is --database, else
 * MIGRATE_DATABASE_URL, else DATABASE_URL.
 */
await runReleaseCli();
