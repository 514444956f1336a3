import { createLogger } from '@sluice/observability';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type TestStack } from '../../../services/data/test/helpers';
import type { RunningService } from '../src/grpc-service';
import { ServiceProcess } from '../src/service-process';

// The process part of the runtime: /readyz follows every service's readiness and turns 503 the
// moment a stop begins (before the services drain), and the stop closes services, then the ops
// listener, then what the process started itself, in that order.

let stack: TestStack;

beforeAll(async () => {
  stack = await startStack();
});

afterAll(async () => {
  await stack?.close();
});

const logger = createLogger({ service: 'test', level: 'silent', env: 'test' });

async function readyz(port: number | undefined) {
  const res = await fetch(`http://127.0.0.1:${port}/readyz`);
  return { status: res.status, body: (await res.json()) as { ready: boolean; reason?: string } };
}

async function waitReady(port: number | undefined): Promise<number> {
  const until = Date.now() + 10_000;
  for (;;) {
    const { status } = await readyz(port);
    if (status === 200 || Date.now() > until) return status;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A service whose close() waits until released, to look at the process mid-stop. */
function heldService(name: string, order: string[]) {
  let release!: () => void;
  const released = new Promise<void>((r) => {
    release = r;
  });
  const service: RunningService = {
    name,
    port: 0,
    logger,
    ready: () => true,
    async close() {
      order.push(`${name} closing`);
      await released;
      order.push(`${name} closed`);
    },
  };
  return { service, release };
}

describe('ServiceProcess', () => {
  it('/readyz is 503 until the services are ready, 200 once the data service has checked its database', async () => {
    const proc = new ServiceProcess({ logger, stopTimeoutMs: 10_000 });
    await proc.startOps('127.0.0.1:0');
    expect(await readyz(proc.opsPort)).toEqual({ status: 503, body: { ready: false, reason: 'starting' } });
    // The shared stack's server, without its close: the stack closes it in afterAll.
    proc.add({ ...stack.server, close: async () => {} });
    expect(await waitReady(proc.opsPort)).toBe(200);
    expect((await readyz(proc.opsPort)).body).toEqual({ ready: true });
    await proc.stop('test', { exit: false });
  });

  it('a stop makes /readyz 503 at once, then closes services, the ops listener and process parts in order', async () => {
    const order: string[] = [];
    const proc = new ServiceProcess({ logger, stopTimeoutMs: 10_000 });
    const held = heldService('held', order);
    proc.add(held.service);
    proc.afterServices(async () => {
      order.push('embedded stopped');
    });
    await proc.startOps('127.0.0.1:0');
    expect((await readyz(proc.opsPort)).status).toBe(200);

    const stopping = proc.stop('test', { exit: false });
    expect(await readyz(proc.opsPort)).toEqual({
      status: 503,
      body: { ready: false, reason: 'shutting down' },
    });
    held.release();
    await stopping;
    expect(order).toEqual(['held closing', 'held closed', 'embedded stopped']);
    // The ops listener is closed by then.
    await expect(fetch(`http://127.0.0.1:${proc.opsPort}/healthz`)).rejects.toThrow();
  });

  it('names the services that are not ready', async () => {
    const proc = new ServiceProcess({ logger, stopTimeoutMs: 10_000 });
    proc.add({ ...heldService('a', []).service, ready: () => false });
    proc.add(heldService('b', []).service);
    expect(proc.readiness()).toEqual({
      ready: false,
      reason: 'not ready (database unreachable or migrations not current): a',
    });
  });
});
