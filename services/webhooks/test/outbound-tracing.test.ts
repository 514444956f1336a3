import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadTracingSettings, shutdownTracing, startTracing } from '@sluice/observability';
import { type OtlpReceiver, startOtlpReceiver } from '@sluice/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { messageId } from '../src/ids';
import { generateSecret } from '../src/secrets';
import { startWebhooksStack, type WebhooksStack } from './helpers';

// Trace context of outbound deliveries (issue 9 §3): each attempt is a CLIENT span linked to the
// write that caused the message (messages.traceparent), exported to a real OTLP receiver; an
// endpoint that asks for it receives the attempt's traceparent, others none.

let otlp: OtlpReceiver;
let stack: WebhooksStack;
let server: http.Server;
let url = '';
const received: http.IncomingHttpHeaders[] = [];

beforeAll(async () => {
  otlp = await startOtlpReceiver();
  const settings = loadTracingSettings({
    OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
    OTEL_BSP_SCHEDULE_DELAY: '50',
  });
  expect(await startTracing({ settings })).toBe(true);
  server = http.createServer((req, res) => {
    received.push(req.headers);
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  stack = await startWebhooksStack({ WEBHOOKS_POLL_INTERVAL_MS: '100' });
});

afterAll(async () => {
  await stack?.close();
  await shutdownTracing();
  server?.closeAllConnections();
  server?.close();
  await otlp?.close();
});

async function endpointFor(eventType: string, sendTraceparent: boolean): Promise<void> {
  const { rows } = await stack.pool.query<{ id: string }>(
    `insert into sluice_webhooks.endpoints (url, event_types, send_traceparent, owner_role)
     values ($1, $2, $3, 'service_role') returning id`,
    [url, [eventType], sendTraceparent],
  );
  await stack.pool.query('insert into sluice_webhooks.secrets (endpoint_id, secret) values ($1, $2)', [
    rows[0]?.id,
    generateSecret(),
  ]);
}

describe('delivery spans', () => {
  it('each attempt is a CLIENT span linked to the writer; the endpoint asking for it gets its traceparent', async () => {
    await endpointFor('traced.test', true);
    const writerTrace = randomBytes(16).toString('hex');
    const writerSpan = randomBytes(8).toString('hex');
    const { rows } = await stack.pool.query<{ id: string }>(
      `insert into sluice_webhooks.messages (event_type, payload, traceparent) values ('traced.test', '{}', $1) returning id`,
      [`00-${writerTrace}-${writerSpan}-01`],
    );
    const msg = (rows[0] as { id: string }).id;
    const span = await otlp.waitFor(
      (s) => s.name === 'sluice.webhooks.deliver' && s.links.some((l) => l.traceId === writerTrace),
      20_000,
    );
    expect(span).toMatchObject({
      kind: 3,
      scope: '@sluice/webhooks',
      parentSpanId: '',
      links: [{ traceId: writerTrace, spanId: writerSpan }],
      attributes: {
        'http.request.method': 'POST',
        'http.response.status_code': 200,
        'sluice.webhooks.message_id': messageId(msg),
        'sluice.webhooks.attempt': 1,
        'sluice.webhooks.outcome': 'succeeded',
      },
    });
    const headers = received.find((h) => h['webhook-id'] === messageId(msg));
    expect(headers?.traceparent).toBe(`00-${span.traceId}-${span.spanId}-01`);
  });

  it('an endpoint that does not ask gets no traceparent, though the attempt is traced', async () => {
    await endpointFor('untraced.test', false);
    const writerTrace = randomBytes(16).toString('hex');
    const { rows } = await stack.pool.query<{ id: string }>(
      `insert into sluice_webhooks.messages (event_type, payload, traceparent) values ('untraced.test', '{}', $1) returning id`,
      [`00-${writerTrace}-${randomBytes(8).toString('hex')}-01`],
    );
    const msg = (rows[0] as { id: string }).id;
    await otlp.waitFor(
      (s) => s.name === 'sluice.webhooks.deliver' && s.links.some((l) => l.traceId === writerTrace),
      20_000,
    );
    const headers = received.find((h) => h['webhook-id'] === messageId(msg));
    expect(headers).toBeDefined();
    expect(headers?.traceparent).toBeUndefined();
  });
});
