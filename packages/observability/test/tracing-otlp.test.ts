import { randomBytes } from 'node:crypto';
import { signToken } from '@sluice/auth';
import { type DataServer, loadDataConfig, startDataServer } from '@sluice/data-service';
import { data } from '@sluice/proto';
import {
  createTestDatabase,
  type OtlpReceiver,
  startOtlpReceiver,
  TEST_JWT_SECRET,
  type TestDatabase,
  USERS,
} from '@sluice/testing';
import { type Channel, createChannel, createClientFactory, Metadata } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shutdownTracing, startTracing } from '../src/tracing';
import { loadTracingSettings } from '../src/tracing-settings';

// Spans of a real data service call reach a real OTLP/HTTP receiver, decoded as a collector
// would, with OTEL_EXPORTER_OTLP_PROTOCOL set each way.

let db: TestDatabase;
let server: DataServer;
let channel: Channel;

beforeAll(async () => {
  db = await createTestDatabase();
  server = await startDataServer(
    loadDataConfig({
      DATABASE_URL: db.appUrl,
      DATA_GRPC_ADDRESS: '127.0.0.1:0',
      JWT_SECRET: TEST_JWT_SECRET,
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    }),
  );
  channel = createChannel(`127.0.0.1:${server.port}`);
});
afterAll(async () => {
  await shutdownTracing();
  channel?.close();
  await server?.close();
  await db?.drop();
});

describe.each(['http/json', 'http/protobuf'] as const)('OTLP over %s', (protocol) => {
  let receiver: OtlpReceiver;
  beforeAll(async () => {
    receiver = await startOtlpReceiver();
  });
  afterAll(async () => {
    await shutdownTracing();
    await receiver?.close();
  });

  it('delivers the RPC span and its SQL spans, with the resource and the headers', async () => {
    const settings = loadTracingSettings({
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
      OTEL_EXPORTER_OTLP_HEADERS: 'x-api-key=otlp%20secret',
      OTEL_SERVICE_NAME: 'sluice-otlp-test',
      OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=test',
      OTEL_BSP_SCHEDULE_DELAY: '50',
    });
    expect(await startTracing({ settings, serviceName: 'ignored' })).toBe(true);
    const traceId = randomBytes(16).toString('hex');
    const parent = randomBytes(8).toString('hex');
    const token = await signToken(
      TEST_JWT_SECRET,
      { sub: USERS.alice, role: 'authenticated' },
      { expiresIn: 60 },
    );
    const client = createClientFactory().create(data.DataServiceDefinition, channel);
    await client.select(
      { table: 'posts', columns: ['id', 'title'], limit: 5 },
      { metadata: Metadata({ authorization: `Bearer ${token}`, traceparent: `00-${traceId}-${parent}-01` }) },
    );

    const rpc = await receiver.waitFor((s) => s.traceId === traceId && s.kind === 2);
    expect(rpc).toMatchObject({
      name: 'sluice.data.v1.DataService/Select',
      parentSpanId: parent,
      scope: '@sluice/grpc',
      attributes: {
        'rpc.system': 'grpc',
        'rpc.service': 'sluice.data.v1.DataService',
        'rpc.method': 'Select',
        'rpc.grpc.status_code': 0,
      },
      resource: { 'service.name': 'sluice-otlp-test', 'deployment.environment': 'test' },
    });
    const sql = await receiver.waitFor((s) => s.traceId === traceId && s.kind === 3);
    expect(sql).toMatchObject({
      name: 'SELECT public.posts',
      parentSpanId: rpc.spanId,
      scope: '@sluice/db',
      attributes: { 'db.system.name': 'postgresql', 'db.operation.name': 'SELECT' },
    });
    // A server-streaming call: its handler is an async generator, stepped by nice-grpc; the
    // cursor's SQL span is still the call's child.
    const streamTrace = randomBytes(16).toString('hex');
    const stream = client.selectStream(
      { query: { table: 'posts', columns: ['id'], limit: 3 }, chunkSize: 1 },
      {
        metadata: Metadata({
          authorization: `Bearer ${token}`,
          traceparent: `00-${streamTrace}-${parent}-01`,
        }),
      },
    );
    for await (const _ of stream) void _;
    const streamRpc = await receiver.waitFor((s) => s.traceId === streamTrace && s.kind === 2);
    expect(streamRpc.name).toBe('sluice.data.v1.DataService/SelectStream');
    const cursor = await receiver.waitFor((s) => s.traceId === streamTrace && s.kind === 3);
    expect(cursor).toMatchObject({ name: 'SELECT public.posts', parentSpanId: streamRpc.spanId });

    const sent = receiver.exports.filter((e) => e.spans.some((s) => s.traceId === traceId));
    expect(sent.every((e) => e.encoding === (protocol === 'http/json' ? 'json' : 'protobuf'))).toBe(true);
    expect(sent.every((e) => e.headers['x-api-key'] === 'otlp secret')).toBe(true);
    // Neither the token nor the claims travel with the spans.
    for (const e of sent) {
      expect(e.body.includes(token)).toBe(false);
      expect(e.body.includes(USERS.alice)).toBe(false);
    }
  });

  it('flushes what is buffered at shutdown', async () => {
    const settings = loadTracingSettings({
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
      // Far longer than the test: only the shutdown's flush can send the span.
      OTEL_BSP_SCHEDULE_DELAY: '600000',
    });
    expect(await startTracing({ settings })).toBe(true);
    const traceId = randomBytes(16).toString('hex');
    const token = await signToken(TEST_JWT_SECRET, { role: 'service_role' }, { expiresIn: 60 });
    const client = createClientFactory().create(data.DataServiceDefinition, channel);
    await client.select(
      { table: 'posts', columns: ['id'], limit: 1 },
      {
        metadata: Metadata({
          authorization: `Bearer ${token}`,
          traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01`,
        }),
      },
    );
    expect(receiver.spans().some((s) => s.traceId === traceId)).toBe(false);
    await shutdownTracing({ timeoutMs: 5000 });
    expect(receiver.spans().filter((s) => s.traceId === traceId).length).toBeGreaterThanOrEqual(2);
  });
});
