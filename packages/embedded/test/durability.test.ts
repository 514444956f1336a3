import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from '@sluice/testing';
import pg from 'pg';
import { expect, it } from 'vitest';
import { type RunningPostgres, startEmbeddedPostgres } from '../src/index';

// Finding 3 of the fault review: the cluster `npm start` keeps (persistent) ran with
// synchronous_commit=off, fsync=off and full_page_writes=off, so a crash could lose or corrupt
// committed data. A persistent cluster is crash-safe now; only throwaway (test) clusters are not.

it('a persistent cluster runs with crash-safe settings', { timeout: 120_000 }, async () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'sluice-durable-pg-'));
  let running: RunningPostgres | undefined;
  try {
    running = await startEmbeddedPostgres({ dataDir, port: await freePort(), persistent: true });
    const client = new pg.Client({ connectionString: running.url });
    client.on('error', () => {});
    await client.connect();
    try {
      const { rows } = await client.query<{ name: string; setting: string }>(
        `select name, setting from pg_settings
          where name in ('fsync', 'synchronous_commit', 'full_page_writes') order by name`,
      );
      expect(rows).toEqual([
        { name: 'fsync', setting: 'on' },
        { name: 'full_page_writes', setting: 'on' },
        { name: 'synchronous_commit', setting: 'on' },
      ]);
    } finally {
      await client.end();
    }
  } finally {
    await running?.stop();
    rmSync(running?.dataDir ?? dataDir, { recursive: true, force: true });
  }
});
