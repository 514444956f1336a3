import { setTimeout as delay } from 'node:timers/promises';
import { Migrator } from '@sluice/migrate';
import { CORE_MIGRATIONS_DIR, CORE_MIGRATIONS_TABLE, migrationsCurrent } from './bootstrap';

/**
 * Whether a service may report SERVING: the database answers and its migrations are current —
 * Sluice's core migrations always, the application's too when `migrationsDir` is given. Any
 * failure (database unreachable, a dirty or pending migration) is "not ready", never a throw.
 */
export async function databaseReady(connectionString: string, migrationsDir?: string): Promise<boolean> {
  try {
    if (migrationsDir) return await migrationsCurrent(connectionString, migrationsDir);
    const core = new Migrator({ connectionString, dir: CORE_MIGRATIONS_DIR, table: CORE_MIGRATIONS_TABLE });
    const [state, pending] = await Promise.all([core.version(), core.pending()]);
    return !state.dirty && pending.length === 0;
  } catch {
    return false;
  }
}

/**
 * Checks readiness now and again until `signal` aborts, reporting each result: every
 * `readyMs` while ready, every `notReadyMs` while not (so recovery shows quickly).
 */
export async function watchReadiness(
  check: () => Promise<boolean>,
  report: (ready: boolean) => void,
  signal: AbortSignal,
  { readyMs = 15_000, notReadyMs = 2_000 }: { readyMs?: number; notReadyMs?: number } = {},
): Promise<void> {
  while (!signal.aborted) {
    const ready = await check();
    if (signal.aborted) return;
    report(ready);
    await delay(ready ? readyMs : notReadyMs, undefined, { signal }).catch(() => {});
  }
}
