import { Database } from '@sluice/db';
import { createTestDatabase, type TestDatabase } from '@sluice/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appPool } from '../packages/changes/test/helpers';
import { startTcpProxy, type TcpProxy } from './tcp-proxy';

// Finding 4 of the fault review: a call's abort sends a cancel request for the statement its
// connection runs; when the call ends on its own before that request lands, the connection
// went back to the pool and the late cancel hit the next call's statement (57014, reported as
// DEADLINE_EXCEEDED). The proxy holds every new connection back 800 ms, so the cancel request
// (a new connection) lands long after the aborted call ended: the window, widened.

let db: TestDatabase;
let proxy: TcpProxy;
let database: Database;

const identity = {
  role: 'service_role',
  claims: { role: 'service_role' },
  userId: undefined,
  tenantId: undefined,
};
const scope = (signal: AbortSignal) => ({ identity, readOnly: true, signal, deadline: undefined });

beforeAll(async () => {
  db = await createTestDatabase();
  proxy = await startTcpProxy(Number(new URL(db.appUrl).port));
  const pool = appPool({ ...db, appUrl: proxy.url(db.appUrl) });
  // One connection: the next call necessarily gets the connection the aborted call used.
  (pool.options as { max: number }).max = 1;
  database = new Database(pool, { statementTimeoutMs: 30_000 });
  await database.run(scope(new AbortController().signal), [{ sql: 'select 1', parameters: [] }]);
});

afterAll(async () => {
  await database?.close();
  await proxy?.close();
  await db?.drop();
});

describe('a cancel request still in flight', () => {
  it('never cancels the statement of the call that uses the connection next', async () => {
    proxy.setConnectDelay(800);
    // Aborted at 100 ms while its 300 ms statement runs; the statement then finishes on its own.
    const aborted = new AbortController();
    setTimeout(() => aborted.abort(), 100);
    await database
      .run(scope(aborted.signal), [{ sql: 'select pg_sleep(0.3)', parameters: [] }])
      .catch(() => {});
    // The next call, with no deadline to speak of, runs while the cancel request is on its way.
    const next = await database
      .run(scope(new AbortController().signal), [
        { sql: 'select pg_sleep(1.2), 42 as answer', parameters: [] },
      ])
      .then(
        (results) => results[0]?.rows[0]?.[1],
        (error: unknown) => error,
      );
    expect(next).toBe('42');
  });
});
