import { metrics } from '@sluice/observability';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACME, type EventsStack, startEventsStack } from './helpers';
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

  it('reports the feed lag (0 when caught up) and the change log size', async () => {
    const before = await gauge('events_change_log_rows');
    await stack.dataClient(await stack.token('dave')).insert({
      table: 'posts',
      columns: ['tenant_id', 'title'],
      rows: [
        {
          values: [
            { kind: { $case: 'stringValue', value: ACME } },
            { kind: { $case: 'stringValue', value: 'metrics lag' } },
          ],
        },
      ],
    });
    // The feed reads the change within milliseconds; the log grew by at least that row.
    for (let i = 0; i < 100 && (await gauge('events_change_log_rows')) <= before; i++)
      await new Promise((r) => setTimeout(r, 20));
    expect(await gauge('events_change_log_rows')).toBeGreaterThan(before);
    for (let i = 0; i < 100 && (await gauge('events_delivery_lag_seconds')) > 0; i++)
      await new Promise((r) => setTimeout(r, 20));
    expect(await gauge('events_delivery_lag_seconds')).toBe(0);
  });
});
