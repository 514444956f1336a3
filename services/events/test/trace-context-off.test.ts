import { randomBytes } from 'node:crypto';
import { Metadata } from 'nice-grpc';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ACME, type EventsStack, startEventsStack } from './helpers';
import { OpenStream } from './open-stream';

// With tracing off (no OTLP endpoint: this file never starts it), a write still carries the
// caller's own traceparent to every subscriber, so their processing can join the caller's trace.

let stack: EventsStack;

beforeAll(async () => {
  stack = await startEventsStack({ EVENTS_HEARTBEAT_MS: '200' });
});
afterAll(async () => {
  await stack?.close();
});

const hex = (bytes: number) => randomBytes(bytes).toString('hex');

it("delivers the caller's traceparent as sent, and its trace id", async () => {
  const alice = new OpenStream(stack.eventsClient(await stack.token('alice')), {
    tables: [{ table: 'posts', columns: ['id', 'title'] }],
    start: { $case: 'fromNow', value: true },
  });
  try {
    await alice.ready();
    const traceparent = `00-${hex(16)}-${hex(8)}-01`;
    await stack.dataClient().insert(
      {
        table: 'posts',
        columns: ['tenant_id', 'title'],
        rows: [
          {
            values: [
              { kind: { $case: 'stringValue', value: ACME } },
              { kind: { $case: 'stringValue', value: `untraced ${hex(4)}` } },
            ],
          },
        ],
      },
      { metadata: Metadata({ authorization: `Bearer ${await stack.token('dave')}`, traceparent }) },
    );
    await alice.waitFor((s) => s.changes.length > 0, 10_000, 'the change');
    const event = alice.changes[0];
    expect(event?.traceparent).toBe(traceparent);
    expect(event?.traceId).toBe(traceparent.split('-')[1]);
  } finally {
    await alice.cancel();
  }
});
