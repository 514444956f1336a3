import { randomBytes } from 'node:crypto';
import { SpanKind } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { loadTracingSettings, shutdownTracing, startTracing } from '@sluice/observability';
import { Metadata } from 'nice-grpc';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createEndpoint, fannedOut, messagesOf, startReceiver } from './fanout-support';
import { ACME, startWebhooksStack, type WebhooksStack } from './helpers';

// From a write to its webhook message: the message keeps the writing statement's traceparent
// (the delivery's span links to it), and the fan-out's batch span is a CONSUMER span linked to
// the writers, with the batch's SQL beneath it.

const exporter = new InMemorySpanExporter();
let stack: WebhooksStack;
let receiver: Awaited<ReturnType<typeof startReceiver>>;

beforeAll(async () => {
  expect(
    await startTracing({ settings: loadTracingSettings({}), exporter, serviceName: 'sluice-test' }),
  ).toBe(true);
  stack = await startWebhooksStack();
  receiver = await startReceiver();
});

afterAll(async () => {
  await stack?.close();
  await receiver?.close();
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

it('links the fan-out batch to the write and keeps its traceparent on the message', async () => {
  const id = await createEndpoint(stack.pool, receiver.url, {
    ownerRole: 'service_role',
    tables: [{ schema: 'public', table: 'posts', operations: ['INSERT'] }],
  });
  const callerTrace = hex(16);
  await stack.dataClient().insert(
    {
      table: 'posts',
      columns: ['tenant_id', 'title'],
      rows: [
        {
          values: [
            { kind: { $case: 'stringValue', value: ACME } },
            { kind: { $case: 'stringValue', value: 'traced' } },
          ],
        },
      ],
    },
    {
      metadata: Metadata({
        authorization: `Bearer ${await stack.token('dave')}`,
        traceparent: `00-${callerTrace}-${hex(8)}-01`,
      }),
    },
  );
  await fannedOut(stack.pool);
  const [message] = await messagesOf(stack.pool, id);
  const [insert] = await spansWhere(
    (s) =>
      s.instrumentationScope.name === '@sluice/db' &&
      s.spanContext().traceId === callerTrace &&
      s.attributes['db.operation.name'] === 'INSERT',
  );
  const writerSpan = insert?.spanContext().spanId;
  expect(writerSpan).toBeTruthy();
  expect(message?.traceparent).toBe(`00-${callerTrace}-${writerSpan}-01`);

  const [batch] = await spansWhere(
    (s) =>
      s.name === 'sluice.webhooks.fanout' &&
      s.links.some((l) => l.context.traceId === callerTrace && l.context.spanId === writerSpan),
  );
  expect(batch?.kind).toBe(SpanKind.CONSUMER);
  expect(batch?.parentSpanContext).toBeUndefined();
  expect(batch?.attributes['sluice.webhooks.messages']).toBe(1);
  // The batch's own statements (the message insert) are its children.
  const beneath = await spansWhere(
    (s) =>
      s.instrumentationScope.name === '@sluice/db' &&
      s.parentSpanContext?.spanId === batch?.spanContext().spanId,
  );
  expect(beneath.length).toBeGreaterThan(0);
  for (const s of beneath) expect(s.kind).toBe(SpanKind.CLIENT);
});
