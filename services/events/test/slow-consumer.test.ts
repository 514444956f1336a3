import { setTimeout as delay } from 'node:timers/promises';
import { Status } from 'nice-grpc';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectStatus } from './expect-status';
import { ACME, type EventsClient, type EventsStack, startEventsStack, USERS } from './helpers';
import { OpenStream, recordOf, type SubscribeReq } from './open-stream';

// EVENTS_BUFFER_EVENTS=50: a stream whose client stops reading is ended once 50 events wait.

const TOTAL = 2000;
const PER_TX = 100;

let stack: EventsStack;
let admin: pg.Client;
let service: EventsClient;

const request = (start: SubscribeReq['start'] = { $case: 'fromNow', value: true }): SubscribeReq => ({
  tables: [{ table: 'posts', columns: ['id', 'title', 'body'] }],
  start,
});

async function waitUntil(predicate: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await delay(10);
  }
}

beforeAll(async () => {
  stack = await startEventsStack({ EVENTS_BUFFER_EVENTS: '50', EVENTS_HEARTBEAT_MS: '100' });
  admin = new pg.Client({ connectionString: stack.db.url });
  await admin.connect();
  service = stack.eventsClient(await stack.token('service'));
});

afterAll(async () => {
  await admin?.end();
  await stack?.close();
});

describe('a client that stops reading', () => {
  it('is ended with RESOURCE_EXHAUSTED and its last position; others are unaffected; it resumes', async () => {
    // Streams of earlier tests are detached asynchronously after their cancellation.
    await waitUntil(() => stack.events.subscribers() === 0, 5_000, 'no streams left');
    const baseline = 0;
    const normal = new OpenStream(service, request());
    const slowController = new AbortController();
    const slow = service.subscribe(request(), { signal: slowController.signal })[Symbol.asyncIterator]();
    const first = await slow.next();
    expect(first.value?.message?.$case).toBe('heartbeat');
    await normal.ready();
    await waitUntil(() => stack.events.subscribers() === baseline + 2, 5_000, 'both streams attached');

    // ~2,000 changes, with bodies large enough that transport buffers cannot hide them all.
    const body = 'x'.repeat(2_000);
    const ids: bigint[] = [];
    for (let i = 0; i < TOTAL / PER_TX; i++) {
      const r = await admin.query<{ id: string }>(
        `insert into public.posts (tenant_id, author_id, title, body)
         select $1, $2, 'slow ' || g, $3 from generate_series(1, ${PER_TX}) g returning id::text`,
        [ACME, USERS.alice, body],
      );
      ids.push(...r.rows.map((x) => BigInt(x.id)));
    }
    expect(ids).toHaveLength(TOTAL);

    // The normal subscriber receives every change, in order, while the slow one does not read.
    await normal.waitFor((x) => x.changes.length >= TOTAL, 30_000, 'all changes on the normal stream');
    expect(normal.changes.map((e) => recordOf(e)?.id)).toEqual(ids);
    expect(normal.error).toBeUndefined();

    // The hub let go of the slow stream: memory for it is bounded by the transport buffers.
    await waitUntil(() => stack.events.subscribers() === baseline + 1, 5_000, 'the slow stream detached');

    // Now the slow client reads: some events, then RESOURCE_EXHAUSTED with the resume position.
    const got: bigint[] = [];
    let lastPosition = first.value?.message?.$case === 'heartbeat' ? first.value.message.value.position : '';
    let error: unknown;
    try {
      for (;;) {
        const { value, done } = await slow.next();
        if (done) break;
        const m = value.message;
        if (m?.$case === 'change') {
          got.push(recordOf(m.value)?.id as bigint);
          lastPosition = m.value.position;
        } else if (m?.$case === 'heartbeat') lastPosition = m.value.position;
      }
    } catch (e) {
      error = e;
    }
    const r = expectStatus(error, { code: Status.RESOURCE_EXHAUSTED, reason: 'SLUICE_SLOW_CONSUMER' });
    expect(got.length).toBeLessThan(TOTAL);
    expect(got).toEqual(ids.slice(0, got.length));
    // The position in the error is that of the last message the client received.
    expect(r.metadata.position).toBe(lastPosition);

    // Resuming from it delivers exactly the rest: no gap, no duplicate.
    const resumed = new OpenStream(
      service,
      request({ $case: 'fromPosition', value: r.metadata.position ?? '' }),
    );
    try {
      await resumed.waitFor((x) => x.changes.length >= TOTAL - got.length, 30_000, 'the rest after resuming');
      await delay(300);
      expect(resumed.error).toBeUndefined();
      expect([...got, ...resumed.changes.map((e) => recordOf(e)?.id as bigint)]).toEqual(ids);
    } finally {
      await resumed.cancel();
      await normal.cancel();
    }
  });

  it('many slow consumers keep server memory bounded', async () => {
    // Streams of earlier tests are detached asynchronously after their cancellation.
    await waitUntil(() => stack.events.subscribers() === 0, 5_000, 'no streams left');
    const baseline = 0;
    const controllers: AbortController[] = [];
    for (let i = 0; i < 20; i++) {
      const c = new AbortController();
      controllers.push(c);
      const it = service.subscribe(request(), { signal: c.signal })[Symbol.asyncIterator]();
      await it.next(); // one heartbeat, then never read again
    }
    await waitUntil(() => stack.events.subscribers() === baseline + 20, 5_000, 'slow streams attached');
    global.gc?.();
    const before = process.memoryUsage().heapUsed;
    const body = 'y'.repeat(2_000);
    for (let i = 0; i < 10; i++) {
      await admin.query(
        `insert into public.posts (tenant_id, author_id, title, body)
         select $1, $2, 'many ' || g, $3 from generate_series(1, ${PER_TX}) g`,
        [ACME, USERS.alice, body],
      );
    }
    // Every one of them overflows and is let go.
    await waitUntil(() => stack.events.subscribers() === baseline, 15_000, 'all slow streams detached');
    global.gc?.();
    const grown = process.memoryUsage().heapUsed - before;
    // 20 streams × 1,000 events × ~2 KB would be ~40 MB if buffered without bound (client side included).
    expect(grown).toBeLessThan(30 * 1024 * 1024);
    for (const c of controllers) c.abort();
  });
});

describe('client cancellation', () => {
  it('frees the subscriber at once', async () => {
    // Streams of earlier tests are detached asynchronously after their cancellation.
    await waitUntil(() => stack.events.subscribers() === 0, 5_000, 'no streams left');
    const baseline = 0;
    const s = new OpenStream(service, request());
    await s.ready();
    await waitUntil(() => stack.events.subscribers() === baseline + 1, 5_000, 'attached');
    const cancelled = Date.now();
    await s.cancel();
    await waitUntil(() => stack.events.subscribers() === baseline, 1_000, 'detached within 1 s');
    expect(Date.now() - cancelled).toBeLessThan(1_000);
  });
});
