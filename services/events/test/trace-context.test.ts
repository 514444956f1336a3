import { randomBytes } from 'node:crypto';
import { SpanKind } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { loadTracingSettings, shutdownTracing, startTracing } from '@sluice/observability';
import { Metadata } from 'nice-grpc';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ACME, type EventsStack, startEventsStack, USERS } from './helpers';
import { OpenStream } from './open-stream';

// One trace from a gRPC Insert to the event a subscriber receives: the data service's server
// span is the caller's child, its SQL spans are the server span's children, the change log
// keeps the writing statement's traceparent, the ChangeEvent carries it, and the events
// service's batch and delivery spans link to it. Real servers, real database, spans kept in
// memory as each ends.

const exporter = new InMemorySpanExporter();
let stack: EventsStack;

beforeAll(async () => {
  expect(
    await startTracing({ settings: loadTracingSettings({}), exporter, serviceName: 'sluice-test' }),
  ).toBe(true);
  stack = await startEventsStack({ EVENTS_HEARTBEAT_MS: '200' });
});
afterAll(async () => {
  await stack?.close();
  await shutdownTracing();
});

const hex = (bytes: number) => randomBytes(bytes).toString('hex');

async function spansWhere(match: (s: ReadableSpan) => boolean, timeoutMs = 10_000): Promise<ReadableSpan[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = exporter.getFinishedSpans().filter(match);
    if (found.length > 0 || Date.now() > deadline) return found;
    await new Promise((r) => setTimeout(r, 20));
  }
}

it('follows an Insert from the caller to the delivered ChangeEvent', async () => {
  const title = `traced ${hex(8)}`;
  const alice = new OpenStream(stack.eventsClient(await stack.token('alice')), {
    tables: [{ table: 'posts', columns: ['id', 'title'] }],
    start: { $case: 'fromNow', value: true },
  });
  try {
    await alice.ready();
    const callerTrace = hex(16);
    const callerSpan = hex(8);
    const dave = stack.dataClient();
    await dave.insert(
      {
        table: 'posts',
        columns: ['tenant_id', 'title'],
        rows: [
          {
            values: [
              { kind: { $case: 'stringValue', value: ACME } },
              { kind: { $case: 'stringValue', value: title } },
            ],
          },
        ],
      },
      {
        metadata: Metadata({
          authorization: `Bearer ${await stack.token('dave')}`,
          traceparent: `00-${callerTrace}-${callerSpan}-01`,
        }),
      },
    );
    await alice.waitFor((s) => s.changes.length > 0, 10_000, 'the change');
    const event = alice.changes[0];

    // The RPC: a SERVER span, child of the caller's span.
    const [server] = await spansWhere((s) => s.name === 'sluice.data.v1.DataService/Insert');
    expect(server?.kind).toBe(SpanKind.SERVER);
    expect(server?.spanContext().traceId).toBe(callerTrace);
    expect(server?.parentSpanContext?.spanId).toBe(callerSpan);
    expect(server?.attributes).toMatchObject({
      'rpc.system': 'grpc',
      'rpc.service': 'sluice.data.v1.DataService',
      'rpc.method': 'Insert',
      'rpc.grpc.status_code': 0,
    });
    const serverSpanId = server?.spanContext().spanId;

    // Its SQL statements: CLIENT spans beneath it.
    const sql = exporter
      .getFinishedSpans()
      .filter((s) => s.instrumentationScope.name === '@sluice/db' && s.spanContext().traceId === callerTrace);
    expect(sql.length).toBeGreaterThan(0);
    for (const s of sql) {
      expect(s.kind).toBe(SpanKind.CLIENT);
      expect(s.parentSpanContext?.spanId).toBe(serverSpanId);
      expect(s.attributes['db.system.name']).toBe('postgresql');
    }
    const insert = sql.find((s) => s.attributes['db.operation.name'] === 'INSERT');
    expect(insert?.attributes['db.collection.name']).toBe('public.posts');
    expect(insert?.attributes['db.response.returned_rows']).toBe(1);

    // The event carries the writing statement's context.
    expect(event?.traceId).toBe(callerTrace);
    expect(event?.traceparent).toBe(`00-${callerTrace}-${insert?.spanContext().spanId}-01`);

    // The feed's batch span and the delivery span to alice link back to it.
    const writer = { traceId: callerTrace, spanId: insert?.spanContext().spanId };
    const linksToWriter = (s: ReadableSpan) =>
      s.links.some((l) => l.context.traceId === writer.traceId && l.context.spanId === writer.spanId);
    const [batch] = await spansWhere((s) => s.name === 'sluice.changes.batch' && linksToWriter(s));
    expect(batch?.kind).toBe(SpanKind.CONSUMER);
    const [delivery] = await spansWhere((s) => s.name === 'sluice.events.deliver' && linksToWriter(s));
    expect(delivery?.kind).toBe(SpanKind.PRODUCER);
    expect(delivery?.parentSpanContext?.spanId).toBe(batch?.spanContext().spanId);
    expect(delivery?.attributes['sluice.events.count']).toBeGreaterThanOrEqual(1);
    // Alice's RLS check of the batch: a step span with its SQL beneath, in the batch's trace.
    const batchSpanId = batch?.spanContext().spanId;
    const [visibility] = await spansWhere(
      (s) => s.name === 'sluice.events.visibility' && s.parentSpanContext?.spanId === batchSpanId,
    );
    const checkSql = await spansWhere(
      (s) =>
        s.instrumentationScope.name === '@sluice/db' &&
        s.parentSpanContext?.spanId === visibility?.spanContext().spanId,
    );
    expect(checkSql.length).toBeGreaterThan(0);

    // No span anywhere holds a value the statements were given, nor a token or a user id.
    const everything = JSON.stringify(
      exporter.getFinishedSpans().map((s) => [s.name, s.attributes, s.status, s.events, s.links]),
    );
    for (const secret of [title, ACME, USERS.dave, USERS.alice, 'Bearer'])
      expect(everything).not.toContain(secret);
  } finally {
    await alice.cancel();
  }
});

it('keeps the caller trace on the change when the call is not sampled', async () => {
  const callerTrace = hex(16);
  const alice = new OpenStream(stack.eventsClient(await stack.token('alice')), {
    tables: [{ table: 'posts', columns: ['id'] }],
    start: { $case: 'fromNow', value: true },
  });
  try {
    await alice.ready();
    await stack.dataClient().insert(
      {
        table: 'posts',
        columns: ['tenant_id', 'title'],
        rows: [
          {
            values: [
              { kind: { $case: 'stringValue', value: ACME } },
              { kind: { $case: 'stringValue', value: 'unsampled' } },
            ],
          },
        ],
      },
      {
        metadata: Metadata({
          authorization: `Bearer ${await stack.token('dave')}`,
          traceparent: `00-${callerTrace}-${hex(8)}-00`,
        }),
      },
    );
    await alice.waitFor((s) => s.changes.length > 0, 10_000, 'the change');
    const event = alice.changes[0];
    // The server span was not sampled (parent-based): no spans of that trace, but the event
    // still names the trace and the (unsampled) server span, flags 00.
    expect(event?.traceparent).toMatch(new RegExp(`^00-${callerTrace}-[\\da-f]{16}-00$`));
    expect(exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === callerTrace)).toEqual([]);
  } finally {
    await alice.cancel();
  }
});
