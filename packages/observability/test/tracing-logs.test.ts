import { randomBytes } from 'node:crypto';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace';
import { callMiddleware } from '@sluice/grpc';
import { createChannel, createClient, createServer, Metadata, type Server } from 'nice-grpc';
import { HealthDefinition } from 'nice-grpc-server-health';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { shutdownTracing, startTracing } from '../src/tracing';
import { loadTracingSettings } from '../src/tracing-settings';

// The call's log line and its server span name each other: trace_id and span_id in the line
// are the span's, so logs (Loki) and traces join.

const lines: Record<string, unknown>[] = [];
let server: Server;
let port: number;

beforeAll(async () => {
  const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) });
  server = createServer().use(callMiddleware({ logger, shutdownSignal: new AbortController().signal }));
  server.add(HealthDefinition, {
    check: async () => ({ status: 1 }),
    async *watch() {},
  });
  port = await server.listen('127.0.0.1:0');
});
afterAll(async () => {
  await server?.shutdown();
});
afterEach(async () => {
  await shutdownTracing();
});

async function check(traceparent: string): Promise<Record<string, unknown> | undefined> {
  const channel = createChannel(`127.0.0.1:${port}`);
  try {
    await createClient(HealthDefinition, channel).check(
      { service: '' },
      { metadata: Metadata({ traceparent }) },
    );
  } finally {
    channel.close();
  }
  return lines.findLast((l) => l.msg === 'rpc');
}

it('logs the server span ids when tracing records the call', async () => {
  const exporter = new InMemorySpanExporter();
  await startTracing({ settings: loadTracingSettings({}), exporter });
  const traceId = randomBytes(16).toString('hex');
  const line = await check(`00-${traceId}-${randomBytes(8).toString('hex')}-01`);
  const [span] = exporter.getFinishedSpans().filter((s) => s.name === 'grpc.health.v1.Health/Check');
  expect(span?.spanContext().traceId).toBe(traceId);
  expect(line).toMatchObject({ trace_id: traceId, span_id: span?.spanContext().spanId });
});

it('logs the caller trace id alone when tracing is off', async () => {
  const traceId = randomBytes(16).toString('hex');
  const line = await check(`00-${traceId}-${randomBytes(8).toString('hex')}-01`);
  expect(line?.trace_id).toBe(traceId);
  expect(line).not.toHaveProperty('span_id');
});
