import { type AbortOptions, abortError, throwIfAborted } from '@sluice/core';
import pg from 'pg';
import { advisoryLockId } from './lock-id';

export interface AdvisoryLockOptions extends AbortOptions {
  /** `application_name` of the session holding the lock (shows in pg_stat_activity). */
  readonly applicationName?: string;
  /** Progress lines (waiting, taken); silent when omitted. */
  readonly log?: (msg: string) => void;
}

/**
 * Runs `fn` while holding the session-level `pg_advisory_lock` of `names` in the database at
 * `connectionString` (key: golang-migrate's {@link advisoryLockId} of the current database and
 * `names`), on a connection of its own that does nothing else. A second caller with the same names
 * waits until the first is done, so whole sequences of work (e.g. several migration sets and the
 * grants after them) run one at a time. Closing the session releases the lock even when the
 * unlock cannot be sent. Needs a direct (or session-mode pooler) connection: a transaction-mode
 * pooler would not keep the lock on one backend.
 *
 * Cancellation: `signal` aborts the wait for the lock (the server-side wait is cancelled with
 * pg_cancel_backend); once `fn` runs, it gets the signal itself.
 *
 * @throws the abort error, a connection error, or what `fn` throws.
 */
export async function withAdvisoryLock<T>(
  connectionString: string,
  names: readonly [string, ...string[]],
  fn: () => Promise<T>,
  options: AdvisoryLockOptions = {},
): Promise<T> {
  const { signal, log = () => {} } = options;
  throwIfAborted(signal);
  const applicationName = options.applicationName ?? 'sluice-migrate';
  const client = new pg.Client({ connectionString, application_name: applicationName });
  // A backend dropped while the lock is held would otherwise be an unhandled 'error' event; the
  // work in `fn` runs on its own connections and learns of a server restart through them.
  client.on('error', () => {});
  try {
    await client.connect();
    const { rows } = await client.query<{ db: string; pid: number }>(
      'SELECT current_database() AS db, pg_backend_pid() AS pid',
    );
    const { db, pid } = rows[0] as { db: string; pid: number };
    const key = advisoryLockId(db, ...names);
    const onAbort = () => {
      void cancelBackend(connectionString, pid);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      log(`locking ${names.join('/')} (pg_advisory_lock ${key})`);
      await client.query('SELECT pg_advisory_lock($1)', [key]);
    } catch (error) {
      if (signal?.aborted) throw abortError(signal);
      throw error;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
    try {
      throwIfAborted(signal);
      return await fn();
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [key]).catch(() => {});
    }
  } finally {
    await client.end().catch(() => {});
  }
}

/** Best effort `pg_cancel_backend(pid)` from a connection of its own (e.g. to end a lock wait). */
export async function cancelBackend(connectionString: string, pid: number): Promise<void> {
  const client = new pg.Client({ connectionString, application_name: 'sluice-migrate-cancel' });
  client.on('error', () => {}); // best effort: never an unhandled 'error' event
  try {
    await client.connect();
    await client.query('SELECT pg_cancel_backend($1)', [pid]);
  } catch {
    // Best effort: closing the waiting session (which the caller does next) also ends the wait.
  } finally {
    await client.end().catch(() => {});
  }
}
