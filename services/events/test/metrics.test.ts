import { metrics } from '@sluice/observability';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EventsStack, startEventsStack } from './helpers';
import { OpenStream } from './open-stream';

// The events service's gauges on the process's metrics (served at /metrics by the ops listener).

let stack: EventsStack;

beforeAll(async () => {
  stack = await startEventsStack({ EVENTS_HEARTBEAT_MS: '100' });
});

afterAll(async () => {
  await stack?.close();
});

async function gauge(name: string): Promise<number> {
  const value = (await metrics.getSingleMetric(name)?.get())?.values[0]?.value;
  return Number(value ?? Number.NaN);
}

describe('events metrics', () => {
  it('counts the streams following the feed and the pool', async () => {
    const token = await stack.token('alice');
    const request = { tables: [{ table: 'posts' }], start: { $case: 'fromNow' as const, value: true } };
    const streams = [
      new OpenStream(stack.eventsClient(token), request),
      new OpenStream(stack.eventsClient(token), request),
    ];
    await Promise.all(streams.map((s) => s.ready()));
    // Attached once caught up with the feed: poll briefly.
    for (let i = 0; i < 100 && (await gauge('events_subscribers')) < 2; i++)
      await new Promise((r) => setTimeout(r, 20));
    expect(await gauge('events_subscribers')).toBe(2);
    expect(await gauge('events_buffered_events')).toBeGreaterThanOrEqual(0);
    const text = await metrics.metrics();
    expect(text).toMatch(/db_pool_connections\{pool="events"\} [1-9]/);
    await Promise.all(streams.map((s) => s.cancel()));
    for (let i = 0; i < 100 && (await gauge('events_subscribers')) > 0; i++)
      await new Promise((r) => setTimeout(r, 20));
    expect(await gauge('events_subscribers')).toBe(0);
  });
});
