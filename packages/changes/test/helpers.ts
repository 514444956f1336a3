import { createPool } from '@sluice/db';
import type { TestDatabase } from '@sluice/testing';
import pg from 'pg';

export function appPool(db: TestDatabase): pg.Pool {
  return createPool({
    connectionString: db.appUrl,
    max: 4,
    min: 0,
    idleTimeoutMs: 10_000,
    maxLifetimeSeconds: 0,
    acquireTimeoutMs: 5_000,
    applicationName: 'changes-test',
  });
}

export async function superClient(db: TestDatabase): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  return client;
}

/** A captured table of the test's own: id, marker (to tell rows apart), tenant_id, n. */
export async function createProbeTable(
  client: pg.Client,
  name = 'change_probe',
  { notify = false }: { notify?: boolean } = {},
): Promise<void> {
  await client.query(`
    create table public.${name} (
      id bigint generated always as identity primary key,
      marker text not null,
      tenant_id text,
      n int8,
      ts timestamptz
    );
    select sluice.enable_changes('public.${name}', notify => ${notify});`);
}
