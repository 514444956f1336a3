import { randomBytes } from 'node:crypto';
import { SpanKind } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { loadTracingSettings, shutdownTracing, startTracing } from '@sluice/observability';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startWebhooksStack, type WebhooksStack } from './helpers';
import { createSource, inboxRows, newSecret, post, sourceName } from './inbound/helpers';

// Each inbound request is a SERVER span, the child of the sender's traceparent; the inbox keeps
// the sender's traceparent for whoever processes the event.

const exporter = new InMemorySpanExporter();
let stack: WebhooksStack;

beforeAll(async () => {
  expect(
    await startTracing({ settings: loadTracingSettings({}), exporter, serviceName: 'sluice-test' }),
  ).toBe(true);
  stack = await startWebhooksStack();
});
afterAll(async () => {
  await stack?.close();
  await shutdownTracing();
});

async function spansWhere(match: (s: ReadableSpan) => boolean, timeoutMs = 10_000): Promise<ReadableSpan[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = exporter.getFinishedSpans().filter(match);
    if (found.length > 0 || Date.now() > deadline) return found;
    await new Promise((r) => setTimeout(r, 20));
  }
}

it('records a SERVER span per request under the sender trace, and stores its traceparent', async () => {
  const secret = newSecret();
  const name = sourceName('traced');
  const id = await createSource(stack, { name, kind: 'standard-webhooks', secrets: [secret] });
  const traceId = randomBytes(16).toString('hex');
  const parentSpan = randomBytes(8).toString('hex');
  const traceparent = `00-${traceId}-${parentSpan}-01`;
  const body = '{"type":"traced"}';
  const msgId = `msg_${randomBytes(8).toString('hex')}`;
  const at = Math.floor(Date.now() / 1000);
  const answer = await post(stack.httpUrl, `/webhooks/${name}`, body, {
    traceparent,
    'webhook-id': msgId,
    'webhook-timestamp': String(at),
    'webhook-signature': new Webhook(secret).sign(msgId, new Date(at * 1000), body),
  });
  expect(answer.status).toBe(200);
  const [span] = await spansWhere((s) => s.spanContext().traceId === traceId);
  expect(span).toBeDefined();
  expect(span!.kind).toBe(SpanKind.SERVER);
  expect(span!.name).toBe('POST /webhooks/{source}');
  expect(span!.parentSpanContext?.spanId).toBe(parentSpan);
  expect(span!.attributes['sluice.webhooks.source']).toBe(name);
  expect(span!.attributes['http.response.status_code']).toBe(200);
  expect((await inboxRows(stack, id))[0]!.traceparent).toBe(traceparent);

  const refusedTrace = randomBytes(16).toString('hex');
  await post(stack.httpUrl, `/webhooks/${name}`, body, {
    traceparent: `00-${refusedTrace}-${parentSpan}-01`,
  });
  const [refused] = await spansWhere((s) => s.spanContext().traceId === refusedTrace);
  expect(refused!.attributes['http.response.status_code']).toBe(401);
});
