import { databaseReady } from '@sluice/db';
import { createLogger, type OpsServer, startOpsServer } from '@sluice/observability';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type TestStack } from './helpers';

// The ops HTTP listener operators and Fly use: /healthz, /readyz (database reachable, migrations
// current, not draining) and /metrics (Prometheus text) with the RPCs this process served.

let stack: TestStack;
let ops: OpsServer;
let draining = false;

beforeAll(async () => {
  stack = await startStack();
  ops = await startOpsServer({
    address: '127.0.0.1:0',
    logger: createLogger({ service: 'test', level: 'silent', env: 'test' }),
    ready: async () => {
      if (draining) return { ready: false, reason: 'shutting down' };
      return (await databaseReady(stack.db.appUrl)) ? { ready: true } : { ready: false, reason: 'database' };
    },
  });
});

afterAll(async () => {
  await ops?.close();
  await stack?.close();
});

const get = (path: string, method = 'GET') => fetch(`http://127.0.0.1:${ops.port}${path}`, { method });

/** The value of one sample of the /metrics text, 0 when absent. */
function sample(text: string, name: string, labels: Record<string, string>): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const inner = line.slice(name.length + 1, line.indexOf('}'));
    const all = Object.entries(labels).every(([k, v]) => inner.includes(`${k}="${v}"`));
    if (all) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}

describe('ops HTTP', () => {
  it('/healthz answers while the process runs; /readyz follows readiness and draining', async () => {
    expect((await get('/healthz')).status).toBe(200);
    const ready = await get('/readyz');
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ ready: true });
    draining = true;
    try {
      const notReady = await get('/readyz');
      expect(notReady.status).toBe(503);
      expect(await notReady.json()).toEqual({ ready: false, reason: 'shutting down' });
    } finally {
      draining = false;
    }
  });

  it('/metrics counts the RPCs by service, method and code, with pool gauges and no request data', async () => {
    const selectOk = { grpc_service: 'sluice.data.v1.DataService', grpc_method: 'Select', grpc_code: 'OK' };
    const selectBad = { ...selectOk, grpc_code: 'INVALID_ARGUMENT' };
    const before = await (await get('/metrics')).text();
    const alice = stack.client(await stack.token('alice'));
    for (let i = 0; i < 3; i++) await alice.select({ table: 'posts', columns: ['id'], limit: 1 });
    await alice.select({ table: 'no_such_table' }).catch(() => {});
    const response = await get('/metrics');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/plain');
    const after = await response.text();
    expect(
      sample(after, 'grpc_server_handled_total', selectOk) -
        sample(before, 'grpc_server_handled_total', selectOk),
    ).toBe(3);
    expect(
      sample(after, 'grpc_server_handled_total', selectBad) -
        sample(before, 'grpc_server_handled_total', selectBad),
    ).toBe(1);
    expect(sample(after, 'grpc_server_started_total', { grpc_method: 'Select' })).toBeGreaterThanOrEqual(4);
    expect(after).toMatch(/grpc_server_handling_seconds_bucket\{[^}]*grpc_method="Select"/);
    expect(sample(after, 'db_pool_connections', { pool: 'data' })).toBeGreaterThan(0);
    expect(after).toContain('process_cpu_seconds_total');
    // Labels never carry request data: no table name, user or tenant.
    expect(after).not.toContain('no_such_table');
    expect(after).not.toMatch(/aaaaaaaa-aaaa|11111111-1111/);
  });

  it('answers 404 for other paths and 405 for other methods', async () => {
    expect((await get('/nope')).status).toBe(404);
    expect((await get('/metrics', 'POST')).status).toBe(405);
  });
});
