import { Session } from 'node:inspector/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Subscriber } from '../src/subscriber';
import { type EventsStack, startEventsStack } from './helpers';
import { OpenStream, type SubscribeReq } from './open-stream';

// A long-lived events instance serves Subscribe call after call: once a call has ended, nothing
// of it may stay reachable. The inspector's queryObjects (which collects garbage first) counts
// the live objects of a prototype, here before and after a few hundred Subscribe calls.

let stack: EventsStack;
let session: Session;

beforeAll(async () => {
  stack = await startEventsStack({ EVENTS_HEARTBEAT_MS: '100' });
  session = new Session();
  session.connect();
});

afterAll(async () => {
  session?.disconnect();
  await stack?.close();
});

/** Live objects whose prototype is the value of `expression` (after a full garbage collection). */
async function live(prototype: object, name: string): Promise<number> {
  (globalThis as Record<string, unknown>)[name] = prototype;
  try {
    const proto = await session.post('Runtime.evaluate', {
      expression: `globalThis[${JSON.stringify(name)}]`,
    });
    const found = await session.post('Runtime.queryObjects', {
      prototypeObjectId: proto.result.objectId as string,
    });
    const length = await session.post('Runtime.callFunctionOn', {
      objectId: found.objects.objectId as string,
      functionDeclaration: 'function () { return this.length; }',
      returnByValue: true,
    });
    await session.post('Runtime.releaseObjectGroup', { objectGroup: '' }).catch(() => {});
    return length.result.value as number;
  } finally {
    delete (globalThis as Record<string, unknown>)[name];
  }
}

let client: ReturnType<EventsStack['eventsClient']> | undefined;

async function subscribeAndCancel(n: number, token: string): Promise<void> {
  const request: SubscribeReq = { tables: [{ table: 'posts' }], start: { $case: 'fromNow', value: true } };
  // One client (one channel) for every call: what is counted is the server's.
  client ??= stack.eventsClient(token);
  for (let i = 0; i < n; i += 10) {
    const streams = Array.from(
      { length: 10 },
      () => new OpenStream(client as NonNullable<typeof client>, request),
    );
    await Promise.all(streams.map((s) => s.ready()));
    await Promise.all(streams.map((s) => s.cancel()));
  }
}

describe('Subscribe calls leave nothing behind', () => {
  it('objects, AbortSignals and subscribers do not grow with the number of calls', async () => {
    const token = await stack.token('alice');
    // Warm up: pools, prepared statements, caches.
    await subscribeAndCancel(50, token);
    await new Promise((r) => setTimeout(r, 300));
    const count = async () => ({
      objects: await live(Object.prototype, '__objects'),
      signals: await live(AbortSignal.prototype, '__signals'),
      subscribers: await live(Subscriber.prototype, '__subscribers'),
    });
    // Two rounds of calls: a leak grows the counts in both, a timer or cache that happened to
    // be alive at one count does not.
    const before = await count();
    await subscribeAndCancel(500, token);
    await new Promise((r) => setTimeout(r, 300));
    const middle = await count();
    await subscribeAndCancel(500, token);
    await new Promise((r) => setTimeout(r, 300));
    const after = await count();
    const seen = JSON.stringify({ before, middle, after });
    const least = (key: keyof typeof before) => Math.min(middle[key] - before[key], after[key] - middle[key]);
    // A few in flight or cached are fine (up to ~300 seen under a full parallel run); a trace of
    // every call is a leak (linking each call's signal to the hub's with AbortSignal.any left
    // ~1.3 objects per call: 650-690 per round here).
    expect(after.subscribers, seen).toBeLessThanOrEqual(before.subscribers + 5);
    expect(least('signals'), seen).toBeLessThan(30);
    expect(least('objects'), seen).toBeLessThan(450);
  }, 120_000); // a thousand calls and three heap counts: slow on a loaded machine
});
