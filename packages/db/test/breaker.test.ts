import { setTimeout as delay } from 'node:timers/promises';
import { EnvReader, type Identity, SluiceError } from '@sluice/core';
import { createPool, Database, type RequestScope, readPoolSettings } from '@sluice/db';
import { metrics, registerPool } from '@sluice/observability';
import { createTestDatabase, type TestDatabase } from '@sluice/testing';
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTcpProxy, type TcpProxy } from '../../../test/tcp-proxy';

// The pool's circuit breaker (breaker.ts) on a real PostgreSQL behind a proxy that plays the
// database going away: connection failures open it, then calls are refused at once; a probe
// after the reset interval closes it again; what a statement does never trips it.

const SERVICE: Identity = { role: 'service_role', claims: {}, userId: undefined, tenantId: undefined };

let db: TestDatabase;
let proxy: TcpProxy;
const open: Array<{ database: Database; unregister: () => void }> = [];

beforeAll(async () => {
  db = await createTestDatabase();
  proxy = await startTcpProxy(Number(new URL(db.appUrl).port));
});

afterEach(async () => {
  proxy.setDown(false);
  proxy.setConnectDelay(0);
  for (const { database, unregister } of open.splice(0)) {
    await database.close();
    unregister();
  }
});

afterAll(async () => {
  await proxy?.close();
  await db?.drop();
});

function start(
  name: string,
  { max = 4, acquireTimeoutMs = 2_000, failures = 3, resetMs = 300 } = {},
): { database: Database; pool: pg.Pool } {
  const pool = createPool({
    connectionString: proxy.url(db.appUrl),
    max,
    min: 0,
    idleTimeoutMs: 10_000,
    maxLifetimeSeconds: 0,
    acquireTimeoutMs,
    applicationName: 'breaker-test',
  });
  const unregister = registerPool(name, pool);
  const database = new Database(pool, { statementTimeoutMs: 5_000, breaker: { failures, resetMs } });
  open.push({ database, unregister });
  return { database, pool };
}

function scope(signal = new AbortController().signal): RequestScope {
  return { identity: SERVICE, readOnly: false, signal, deadline: undefined };
}

const select1 = { sql: 'select 1', parameters: [] };

/** The call's SluiceError (or what else it threw) and how long it took, in ms. */
async function timed(call: Promise<unknown>): Promise<{ error: unknown; ms: number }> {
  const started = performance.now();
  const error = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  return { error, ms: performance.now() - started };
}

async function metricValue(name: string, labels: Record<string, string>): Promise<number | undefined> {
  const metric = metrics.getSingleMetric(name);
  const values = (await metric?.get())?.values ?? [];
  return values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value;
}

describe('the circuit breaker of a pool', () => {
  it('opens after connection failures in a row, refuses at once, and closes after a probe connects', async () => {
    const { database } = start('breaker-a');
    await database.run(scope(), [select1]);
    expect(await metricValue('db_breaker_state', { pool: 'breaker-a' })).toBe(0);

    proxy.setDown(true);
    // The pooled connection is cut; every new one is refused. Three failed attempts open it.
    const failures: unknown[] = [];
    for (let i = 0; i < 6 && !(failures.at(-1) instanceof SluiceError && isOpen(failures.at(-1))); i++) {
      failures.push((await timed(database.run(scope(), [select1]))).error);
    }
    expect(failures.every((e) => e instanceof SluiceError && e.code === 'UNAVAILABLE')).toBe(true);
    expect(isOpen(failures.at(-1))).toBe(true);
    expect(await metricValue('db_breaker_state', { pool: 'breaker-a' })).toBe(2);

    // Open: refused without trying (no connection attempt reaches the proxy).
    const acceptedBefore = proxy.accepted;
    const refusals = await Promise.all(
      Array.from({ length: 20 }, () => timed(database.run(scope(), [select1]))),
    );
    for (const r of refusals) {
      expect(r.error).toMatchObject({ code: 'UNAVAILABLE', reason: 'SLUICE_CIRCUIT_OPEN' });
      expect(r.ms).toBeLessThan(200);
    }
    expect(proxy.accepted).toBe(acceptedBefore);
    expect(await metricValue('db_breaker_rejected_total', { pool: 'breaker-a' })).toBeGreaterThanOrEqual(20);

    // Still down at the reset: the probe fails and the breaker opens again.
    await delay(400);
    expect(await metricValue('db_breaker_state', { pool: 'breaker-a' })).toBe(1);
    const probe = await timed(database.run(scope(), [select1]));
    expect(probe.error).toMatchObject({ code: 'UNAVAILABLE', reason: 'SLUICE_DATABASE_UNAVAILABLE' });
    expect(proxy.accepted).toBe(acceptedBefore + 1);
    expect(await metricValue('db_breaker_state', { pool: 'breaker-a' })).toBe(2);

    proxy.setDown(false);
    await delay(400);
    // Back: the probe connects and closes the breaker; everything is served again.
    await database.run(scope(), [select1]);
    const results = await Promise.all(Array.from({ length: 5 }, () => database.run(scope(), [select1])));
    expect(results).toHaveLength(5);
    expect(await metricValue('db_breaker_state', { pool: 'breaker-a' })).toBe(0);
  });

  it('turns connection attempts that hang (packets dropped) into refusals at once', async () => {
    const { database } = start('breaker-f', { acquireTimeoutMs: 300, failures: 3, resetMs: 5_000 });
    // The proxy accepts and holds every new connection far past the pool's connect timeout.
    proxy.setConnectDelay(5_000);
    const first = await Promise.all(Array.from({ length: 3 }, () => timed(database.run(scope(), [select1]))));
    for (const r of first) {
      expect(r.error).toMatchObject({ code: 'UNAVAILABLE', reason: 'SLUICE_DATABASE_UNAVAILABLE' });
      expect(r.ms).toBeGreaterThanOrEqual(250);
    }
    const later = await Promise.all(
      Array.from({ length: 10 }, () => timed(database.run(scope(), [select1]))),
    );
    for (const r of later) {
      expect(r.error).toMatchObject({ code: 'UNAVAILABLE', reason: 'SLUICE_CIRCUIT_OPEN' });
      expect(r.ms).toBeLessThan(200);
    }
  });

  it('lets one probe through in half-open while the others are refused', async () => {
    const { database } = start('breaker-b', { failures: 1, resetMs: 200 });
    proxy.setDown(true);
    await timed(database.run(scope(), [select1]));
    await delay(300);
    proxy.setDown(false);
    // The probe is slow to connect; calls meanwhile are refused at once.
    proxy.setConnectDelay(1_000);
    const probe = database.run(scope(), [select1]);
    await delay(20);
    const during = await timed(database.run(scope(), [select1]));
    expect(during.error).toMatchObject({ reason: 'SLUICE_CIRCUIT_OPEN' });
    expect(during.ms).toBeLessThan(200);
    await probe;
    proxy.setConnectDelay(0);
    await database.run(scope(), [select1]);
  });

  it('is not tripped by statement errors, timeouts, cancellations or a saturated pool', async () => {
    const { database } = start('breaker-c', { max: 1, acquireTimeoutMs: 200, failures: 2 });
    const errors: unknown[] = [];
    const bad = [
      { sql: 'select 1/0', parameters: [] },
      { sql: "select 'x'::int", parameters: [] },
      { sql: 'select * from no_such_table', parameters: [] },
      { sql: 'select pg_sleep(1)', parameters: [] },
    ];
    for (let round = 0; round < 3; round++) {
      for (const statement of bad) {
        const deadline = statement.sql.includes('sleep') ? new Date(Date.now() + 100) : undefined;
        errors.push((await timed(database.run({ ...scope(), deadline }, [statement]))).error);
      }
      // Cancelled while the statement runs.
      const controller = new AbortController();
      const running = database.run(scope(controller.signal), [{ sql: 'select pg_sleep(1)', parameters: [] }]);
      setTimeout(() => controller.abort(), 50);
      errors.push((await timed(running)).error);
    }
    expect(errors.every((e) => e instanceof SluiceError && e.code !== 'UNAVAILABLE')).toBe(true);

    // The only connection held: checkouts wait their 200 ms and fail (saturation, not failure),
    // and callers that give up while waiting do not count either.
    const holder = database.transaction(scope(), async (tx) => {
      await tx.query({ sql: 'select pg_sleep(1.5)', parameters: [] });
    });
    await delay(100);
    const waits = await Promise.all(
      Array.from({ length: 4 }, async (_, i) => {
        const controller = new AbortController();
        if (i % 2) setTimeout(() => controller.abort(), 50);
        return (await timed(database.run(scope(controller.signal), [select1]))).error;
      }),
    );
    expect(waits.some((e) => e instanceof SluiceError && e.code === 'UNAVAILABLE')).toBe(true);
    expect(waits.some((e) => e instanceof SluiceError && e.code === 'CANCELLED')).toBe(true);
    await holder;
    expect(await metricValue('db_breaker_state', { pool: 'breaker-c' })).toBe(0);
    await database.run(scope(), [select1]);
  });

  it('counts aborted waits by the attempt, not the caller', async () => {
    const { database } = start('breaker-d', { failures: 2 });
    // Slow connects: callers give up first; the attempts then succeed, so nothing opens.
    proxy.setConnectDelay(200);
    for (let i = 0; i < 4; i++) {
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 20);
      expect((await timed(database.run(scope(controller.signal), [select1]))).error).toMatchObject({
        code: 'CANCELLED',
      });
    }
    await delay(400);
    proxy.setConnectDelay(0);
    expect(await metricValue('db_breaker_state', { pool: 'breaker-d' })).toBe(0);
    await database.run(scope(), [select1]);
  });

  it('is off with DB_BREAKER_FAILURES=0, and its settings are read with defaults', async () => {
    const settings = (env: Record<string, string>) => {
      const r = new EnvReader(env);
      const s = readPoolSettings(r);
      r.done();
      return s.breaker;
    };
    expect(settings({})).toEqual({ failures: 5, resetMs: 1_000 });
    expect(settings({ DB_BREAKER_FAILURES: '0', DB_BREAKER_RESET_MS: '250' })).toEqual({
      failures: 0,
      resetMs: 250,
    });
    expect(() => settings({ DB_BREAKER_RESET_MS: '0' })).toThrow(/DB_BREAKER_RESET_MS/);

    const { database } = start('breaker-e', { failures: 0 });
    proxy.setDown(true);
    for (let i = 0; i < 6; i++) {
      expect((await timed(database.run(scope(), [select1]))).error).toMatchObject({
        reason: 'SLUICE_DATABASE_UNAVAILABLE',
      });
    }
    expect(await metricValue('db_breaker_state', { pool: 'breaker-e' })).toBeUndefined();
  });
});

function isOpen(error: unknown): boolean {
  return error instanceof SluiceError && error.reason === 'SLUICE_CIRCUIT_OPEN';
}
