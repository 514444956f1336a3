import { setTimeout as delay } from 'node:timers/promises';
import type { events } from '@sluice/proto';
import { Status } from 'nice-grpc';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectStatus } from './expect-status';
import { ACME, type EventsStack, startEventsStack, USERS } from './helpers';
import { OpenStream, recordOf, type SubscribeReq } from './open-stream';

let stack: EventsStack;
let admin: pg.Client;

const request = (start: SubscribeReq['start'] = { $case: 'fromNow', value: true }): SubscribeReq => ({
  tables: [{ table: 'posts', columns: ['id', 'title', 'body'] }],
  start,
});

async function insertPosts(n: number, title: string, body = ''): Promise<bigint[]> {
  const r = await admin.query<{ id: string }>(
    `insert into public.posts (tenant_id, author_id, title, body)
     select $1, $2, $3 || ' ' || g, $4 from generate_series(1, ${n}) g returning id::text`,
    [ACME, USERS.alice, title, body],
  );
  return r.rows.map((x) => BigInt(x.id));
}

/** Position of the last change or heartbeat received. */
function lastPosition(messages: readonly events.SubscribeResponse[]): string | undefined {
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i]?.message;
    if (m?.$case === 'change' || m?.$case === 'heartbeat' || m?.$case === 'snapshotEnd')
      return m.value.position;
  }
  return undefined;
}

beforeAll(async () => {
  stack = await startEventsStack({ EVENTS_HEARTBEAT_MS: '200' });
  admin = new pg.Client({ connectionString: stack.db.url });
  await admin.connect();
});

afterAll(async () => {
  await admin?.end();
  await stack?.close();
});

describe('shutdown', () => {
  it('ends streams with UNAVAILABLE and a position; after a restart the stream resumes with no gap and no duplicate', async () => {
    const s = new OpenStream(stack.eventsClient(await stack.token('service')), request());
    await s.ready();
    const a = await insertPosts(5, 'before');
    await s.waitFor((x) => x.changes.length >= 5, 10_000, 'the first changes');
    const b = await insertPosts(5, 'racing');
    const restarting = stack.restartEvents();
    await s.done;
    const r = expectStatus(s.error, { code: Status.UNAVAILABLE, reason: 'SLUICE_SHUTTING_DOWN' });
    expect(r.metadata.position).toBeTruthy();
    expect(r.metadata.position).toBe(lastPosition(s.messages));
    // Written while the service is down or starting.
    const c = await insertPosts(5, 'while down');
    await restarting;

    const resumed = new OpenStream(
      stack.eventsClient(await stack.token('service')),
      request({ $case: 'fromPosition', value: r.metadata.position ?? '' }),
    );
    try {
      const expected = [...a, ...b, ...c];
      const before = s.changes.map((e) => recordOf(e)?.id as bigint);
      await resumed.waitFor((x) => before.length + x.changes.length >= expected.length, 10_000, 'the rest');
      const d = await insertPosts(2, 'after');
      await resumed.waitFor((x) => x.changes.some((e) => recordOf(e)?.id === d[1]), 10_000, 'live changes');
      expect([...before, ...resumed.changes.map((e) => recordOf(e)?.id as bigint)]).toEqual([
        ...expected,
        ...d,
      ]);
    } finally {
      await resumed.cancel();
    }
  });

  it('the position in the error accounts for messages still queued when the shutdown began', async () => {
    const controller = new AbortController();
    const stream = stack
      .eventsClient(await stack.token('service'))
      .subscribe(request(), { signal: controller.signal })
      [Symbol.asyncIterator]();
    const first = await stream.next();
    expect(first.value?.message?.$case).toBe('heartbeat');
    // Stop reading while ~3 MB of changes arrive: the transport fills and the rest waits in the
    // stream's queue (within its bounds) when the server starts shutting down.
    const ids = await insertPosts(700, 'queued', 'q'.repeat(4_000));
    await delay(1_000);
    const restarting = stack.restartEvents();
    await delay(100);
    const received: events.SubscribeResponse[] = [first.value as events.SubscribeResponse];
    let error: unknown;
    try {
      for (;;) {
        const { value, done } = await stream.next();
        if (done) break;
        received.push(value);
      }
    } catch (e) {
      error = e;
    }
    await restarting;
    const r = expectStatus(error, { code: Status.UNAVAILABLE, reason: 'SLUICE_SHUTTING_DOWN' });
    expect(r.metadata.position).toBe(lastPosition(received));
    const got = received.flatMap((m) =>
      m.message?.$case === 'change' ? [recordOf(m.message.value)?.id] : [],
    );
    expect(got).toEqual(ids.slice(0, got.length));

    // Resuming from it continues exactly after the last change received.
    const resumed = new OpenStream(
      stack.eventsClient(await stack.token('service')),
      request({ $case: 'fromPosition', value: r.metadata.position ?? '' }),
    );
    try {
      await resumed.waitFor((x) => got.length + x.changes.length >= ids.length, 15_000, 'the rest');
      await delay(300);
      expect([...got, ...resumed.changes.map((e) => recordOf(e)?.id)]).toEqual(ids);
    } finally {
      await resumed.cancel();
    }
  });
});

describe('heartbeats', () => {
  it('an idle subscriber gets heartbeats carrying a usable position', async () => {
    const service = stack.eventsClient(await stack.token('service'));
    // Subscribed to documents only: the posts written below do not match, but the position moves past them.
    const s = new OpenStream(service, {
      tables: [{ table: 'documents' }],
      start: { $case: 'fromNow', value: true },
    });
    try {
      await s.waitFor((x) => x.heartbeats.length >= 3, 5_000, 'three heartbeats');
      expect(s.changes).toEqual([]);
      for (const h of s.heartbeats) {
        expect(h.position).toMatch(/^[A-Za-z0-9_-]+$/);
        expect(h.serverTime?.seconds).toBeGreaterThan(0n);
      }
      const idle = s.heartbeats.at(-1)?.position;
      await insertPosts(3, 'not for documents');
      const n = s.heartbeats.length;
      await s.waitFor(
        (x) => x.heartbeats.slice(n).some((h) => h.position !== idle),
        5_000,
        'a heartbeat past the posts',
      );
      const moved = s.heartbeats.slice(n).find((h) => h.position !== idle)?.position ?? '';
      // A heartbeat's position is a resume point: a stream from it opens (and is live).
      const from = new OpenStream(service, {
        tables: [{ table: 'posts' }],
        start: { $case: 'fromPosition', value: moved },
      });
      await from.waitFor((x) => x.heartbeats.length > 0, 5_000, 'a heartbeat from the resumed stream');
      // Posts written before `moved` are behind it: none is delivered again.
      await delay(300);
      expect(from.changes).toEqual([]);
      await from.cancel();
    } finally {
      await s.cancel();
    }
  });
});
