import { setTimeout as delay } from 'node:timers/promises';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, trace } from '@opentelemetry/api';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import {
  bindIterator,
  parseTraceparent,
  shutdownTracing,
  startTracing,
  tracerFor,
  tracingEnabled,
  writerTraceContext,
} from '../src/tracing';
import { loadTracingSettings } from '../src/tracing-settings';
import { startSqlSpan, trackSqlSpan } from '../src/tracing-sql';

// A new one per start: shutting tracing down shuts its exporter down too.
let exporter = new InMemorySpanExporter();

async function start(env: Record<string, string> = {}): Promise<void> {
  exporter = new InMemorySpanExporter();
  expect(await startTracing({ settings: loadTracingSettings(env), exporter })).toBe(true);
}

afterEach(async () => {
  await shutdownTracing();
});

describe('startTracing', () => {
  it('starts nothing without an endpoint or exporter, and is idempotent once started', async () => {
    expect(await startTracing({ settings: loadTracingSettings({}) })).toBe(false);
    expect(tracingEnabled()).toBe(false);
    expect(tracerFor('@sluice/test')).toBeUndefined();
    await start();
    const other = new InMemorySpanExporter();
    expect(await startTracing({ settings: loadTracingSettings({}), exporter: other, serviceName: 'x' })).toBe(
      true,
    );
    tracerFor('@sluice/test')?.startSpan('one').end();
    expect(exporter.getFinishedSpans()).toHaveLength(1);
    expect(other.getFinishedSpans()).toHaveLength(0);
  });

  it('honours OTEL_SDK_DISABLED even with an exporter', async () => {
    expect(
      await startTracing({ settings: loadTracingSettings({ OTEL_SDK_DISABLED: 'true' }), exporter }),
    ).toBe(false);
  });
});

describe('bindIterator', () => {
  it('keeps the span active in every step of an async generator driven from another context', async () => {
    await start();
    const span = tracerFor('@sluice/test')?.startSpan('rpc');
    if (!span) throw new Error('no span');
    const seen: (string | undefined)[] = [];
    const active = () => trace.getActiveSpan()?.spanContext().spanId;
    async function* handler() {
      seen.push(active());
      await delay(1);
      seen.push(active());
      yield 1;
      seen.push(active());
      await Promise.resolve();
      yield 2;
      seen.push(active());
    }
    // Unbound, the generator runs in whatever context steps it: here, none.
    for await (const _ of handler()) void _;
    expect(seen.every((id) => id === undefined)).toBe(true);
    seen.length = 0;
    const items: number[] = [];
    for await (const item of bindIterator(trace.setSpan(ROOT_CONTEXT, span), handler())) items.push(item);
    expect(items).toEqual([1, 2]);
    expect(seen).toEqual(Array(4).fill(span.spanContext().spanId));
    span.end();
  });
});

describe('SQL spans', () => {
  it('summarize the statement and record rows or the SQLSTATE, never values', async () => {
    await start();
    const rpc = tracerFor('@sluice/test')?.startSpan('rpc', { kind: SpanKind.SERVER });
    if (!rpc) throw new Error('no span');
    const ctx = trace.setSpan(ROOT_CONTEXT, rpc);
    await import('@opentelemetry/api').then(({ context }) =>
      context.with(ctx, async () => {
        const select = startSqlSpan(
          `select "id", "title" from "public"."posts" where "title" = $1 and "note" <> 'from secret_table'`,
        );
        await trackSqlSpan(select, Promise.resolve({ rowCount: 3 }));
        const insert = startSqlSpan('insert into "app"."Users" ("email") values ($1) returning "id"');
        const failed = trackSqlSpan(
          insert,
          Promise.reject(
            Object.assign(new Error('Key (email)=(a@example.com) already exists'), { code: '23505' }),
          ),
        );
        await expect(failed).rejects.toThrow();
        expect(writerTraceContext('fallback', insert)).toBe(
          `00-${rpc.spanContext().traceId}-${insert?.spanContext().spanId}-01`,
        );
      }),
    );
    rpc.end();
    const spans = exporter.getFinishedSpans();
    const select = spans.find((s) => s.name === 'SELECT public.posts');
    const insert = spans.find((s) => s.name === 'INSERT app.Users');
    expect(select?.kind).toBe(SpanKind.CLIENT);
    expect(select?.parentSpanContext?.spanId).toBe(rpc.spanContext().spanId);
    expect(select?.attributes).toMatchObject({
      'db.system': 'postgresql',
      'db.system.name': 'postgresql',
      'db.operation.name': 'SELECT',
      'db.collection.name': 'public.posts',
      'db.response.returned_rows': 3,
    });
    expect(insert?.status).toEqual({ code: SpanStatusCode.ERROR, message: '23505' });
    expect(insert?.attributes['error.type']).toBe('23505');
    const everything = JSON.stringify(spans.map((s) => [s.name, s.attributes, s.status, s.events]));
    expect(everything).not.toContain('secret_table');
    expect(everything).not.toContain('example.com');
  });

  it('are not made beneath a span that is not sampled; the writer context still names it', async () => {
    await start({ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0' });
    const rpc = tracerFor('@sluice/test')?.startSpan('rpc');
    if (!rpc) throw new Error('no span');
    expect(rpc.isRecording()).toBe(false);
    const { context } = await import('@opentelemetry/api');
    context.with(trace.setSpan(ROOT_CONTEXT, rpc), () => {
      expect(startSqlSpan('select 1')).toBeUndefined();
      expect(writerTraceContext(undefined)).toMatch(
        new RegExp(`^00-[\\da-f]{32}-${rpc.spanContext().spanId}-00$`),
      );
    });
    expect(writerTraceContext('00-caller')).toBe('00-caller');
  });
});

describe('sampling', () => {
  it('samples a root span linked to a sampled span, whatever the ratio', async () => {
    await start({ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0' });
    const tracer = tracerFor('@sluice/test');
    const sampled = parseTraceparent(`00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`);
    const unsampled = parseTraceparent(`00-${'c'.repeat(32)}-${'d'.repeat(16)}-00`);
    if (!tracer || !sampled || !unsampled) throw new Error('setup');
    expect(sampled.traceFlags).toBe(TraceFlags.SAMPLED);
    expect(tracer.startSpan('plain', { root: true }).isRecording()).toBe(false);
    expect(tracer.startSpan('linked', { root: true, links: [{ context: unsampled }] }).isRecording()).toBe(
      false,
    );
    const linked = tracer.startSpan('linked', {
      root: true,
      links: [{ context: unsampled }, { context: sampled }],
    });
    expect(linked.isRecording()).toBe(true);
  });

  it('parses only valid version-00 traceparents', () => {
    expect(parseTraceparent(`00-${'0'.repeat(32)}-${'b'.repeat(16)}-01`)).toBeUndefined();
    expect(parseTraceparent('01-abc')).toBeUndefined();
    expect(parseTraceparent(undefined)).toBeUndefined();
  });
});

describe('export failures', () => {
  it('are reported on the logger given, also when the preload started tracing', async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => lines.push(JSON.parse(line)) });
    // Nothing listens on port 9 of the loopback: every export fails at once.
    const settings = loadTracingSettings({
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9',
      OTEL_EXPORTER_OTLP_TIMEOUT: '300',
      OTEL_BSP_SCHEDULE_DELAY: '10',
    });
    expect(await startTracing({ settings })).toBe(true);
    expect(await startTracing({ settings, logger })).toBe(true);
    tracerFor('@sluice/test')?.startSpan('lost').end();
    for (let i = 0; i < 100 && lines.length === 0; i++) await delay(50);
    expect(lines[0]).toMatchObject({ level: 40, component: 'otel' });
    expect(String(lines[0]?.msg)).toMatch(/^tracing: /);
  });
});
