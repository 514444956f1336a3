import {
  type Context,
  context,
  diag,
  isSpanContextValid,
  propagation,
  type SpanContext,
  TraceFlags,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import type { Sampler, SpanExporter } from '@opentelemetry/sdk-trace';
import type { Logger } from 'pino';
import type { TracingSettings } from './tracing-settings';

/**
 * OpenTelemetry tracing for the process: off unless configured (see readTracingSettings), and
 * then one SDK tracer provider, the W3C trace-context propagator and an AsyncLocalStorage
 * context manager, registered globally.
 *
 * Spans are made by hand where Sluice does the work (the gRPC call middleware, the Database
 * class, the change feed and event delivery), not by patching modules: no require/import hook
 * is needed, nothing about pg or grpc-js internals is assumed, and the cost is known. When
 * tracing is off, `tracerFor` answers undefined and those places skip every tracing call; the
 * SDK is not even loaded (it is imported only when tracing starts).
 *
 * The state lives on globalThis, not in this module: the `--import` preload (register.ts) may be
 * a separate bundle from the application, with its own copy of this module, and both must see
 * one provider.
 */
interface TracingState {
  provider: { forceFlush(): Promise<void>; shutdown(): Promise<void> } | undefined;
  /** Bumped at every start, so cached tracers of an earlier provider are not reused. */
  generation: number;
  starting: Promise<boolean> | undefined;
  readonly tracers: Map<string, { generation: number; tracer: Tracer }>;
}

const STATE_KEY = Symbol.for('sluice.observability.tracing');
const globals = globalThis as Record<symbol, TracingState | undefined>;
globals[STATE_KEY] ??= { provider: undefined, generation: 0, starting: undefined, tracers: new Map() };
const state: TracingState = globals[STATE_KEY];

export interface StartTracingOptions {
  /** What the OTEL_* variables say (readTracingSettings / loadTracingSettings). */
  readonly settings: TracingSettings;
  /** service.name when OTEL_SERVICE_NAME is unset (default "sluice"). */
  readonly serviceName?: string;
  /**
   * Export to this exporter instead of OTLP, span by span as each ends (tests: an
   * InMemorySpanExporter). Tracing then starts even without an endpoint.
   */
  readonly exporter?: SpanExporter;
  /** Where export failures are reported (at warn, without headers). */
  readonly logger?: Logger;
}

/**
 * Starts tracing when the settings turn it on (or an `exporter` is given); resolves true when
 * tracing runs. Idempotent: when tracing already runs (the `--import` preload started it), the
 * running provider is kept and only `logger` is taken (service.name then comes from
 * OTEL_SERVICE_NAME, or is "sluice").
 */
export function startTracing(options: StartTracingOptions): Promise<boolean> {
  if (state.provider) {
    // Started by the preload, which has no logger: export failures go to this one from now on.
    if (options.logger) reportTo(options.logger);
    return Promise.resolve(true);
  }
  if (state.starting) return state.starting;
  const wanted = options.exporter ? !options.settings.sdkDisabled : options.settings.enabled;
  if (!wanted) return Promise.resolve(false);
  state.starting = start(options).finally(() => {
    state.starting = undefined;
  });
  return state.starting;
}

async function start(options: StartTracingOptions): Promise<boolean> {
  const { settings } = options;
  const [sdk, resources, core, hooks] = await Promise.all([
    import('@opentelemetry/sdk-trace'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/core'),
    import('@opentelemetry/context-async-hooks'),
  ]);
  let processor: import('@opentelemetry/sdk-trace').SpanProcessor;
  if (options.exporter) {
    processor = new sdk.SimpleSpanProcessor({ exporter: options.exporter });
  } else {
    const target = settings.export;
    if (!target) return false;
    const exporterConfig = {
      url: target.url,
      headers: { ...target.headers },
      timeoutMillis: target.timeoutMs,
    };
    const exporter: SpanExporter =
      target.protocol === 'http/json'
        ? (new (await import('@opentelemetry/exporter-trace-otlp-http')).OTLPTraceExporter(
            exporterConfig,
          ) as unknown as SpanExporter)
        : new (await import('@opentelemetry/exporter-trace-otlp-proto')).OTLPTraceExporter(exporterConfig);
    processor = new sdk.BatchSpanProcessor({
      exporter,
      scheduledDelayMillis: settings.batch.scheduledDelayMs,
      exportTimeoutMillis: settings.batch.exportTimeoutMs,
      maxQueueSize: settings.batch.maxQueueSize,
      maxExportBatchSize: settings.batch.maxExportBatchSize,
    });
  }
  const resource = resources.defaultResource().merge(
    resources.resourceFromAttributes({
      ...settings.resourceAttributes,
      'service.name': settings.serviceName ?? options.serviceName ?? 'sluice',
    }),
  );
  const provider = new sdk.TracerProvider({
    resource,
    sampler: linkAwareSampler(sdk, settings),
    spanProcessors: [processor],
  });
  if (options.logger) reportTo(options.logger);
  context.setGlobalContextManager(new hooks.AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new core.W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
  state.provider = provider;
  state.generation += 1;
  return true;
}

/** Export failures (reported by the SDK through diag) go to `logger` at warn; never a request's data. */
function reportTo(logger: Logger): void {
  diag.setLogger(
    {
      error: (message) => logger.warn({ component: 'otel' }, `tracing: ${message}`),
      warn: (message) => logger.warn({ component: 'otel' }, `tracing: ${message}`),
      info: () => {},
      debug: () => {},
      verbose: () => {},
    },
    { suppressOverrideMessage: true },
  );
}

/**
 * The SDK sampler OTEL_TRACES_SAMPLER names, wrapped so that a root span linked to a sampled
 * span is sampled too (unless the sampler is always_off): the change feed's batch spans and
 * delivery spans link to the writers' spans, and a write that was traced should have its
 * deliveries traced, whatever the ratio decided for the feed.
 */
function linkAwareSampler(
  sdk: typeof import('@opentelemetry/sdk-trace'),
  settings: TracingSettings,
): Sampler {
  const ratio = new sdk.TraceIdRatioBasedSampler(settings.samplerRatio);
  let inner: Sampler;
  switch (settings.sampler) {
    case 'always_on':
      return new sdk.AlwaysOnSampler();
    case 'always_off':
      return new sdk.AlwaysOffSampler();
    case 'parentbased_always_off':
      return new sdk.ParentBasedSampler({ root: new sdk.AlwaysOffSampler() });
    case 'traceidratio':
      inner = ratio;
      break;
    case 'parentbased_traceidratio':
      inner = new sdk.ParentBasedSampler({ root: ratio });
      break;
    default:
      return new sdk.ParentBasedSampler({ root: new sdk.AlwaysOnSampler() });
  }
  return {
    shouldSample(ctx, traceId, name, kind, attributes, links) {
      if (
        !trace.getSpanContext(ctx) &&
        links.some((l) => (l.context.traceFlags & TraceFlags.SAMPLED) !== 0)
      ) {
        return { decision: sdk.SamplingDecision.RECORD_AND_SAMPLED };
      }
      return inner.shouldSample(ctx, traceId, name, kind, attributes, links);
    },
    toString: () => `LinkAware{${inner.toString()}}`,
  };
}

/**
 * Flushes the spans still buffered and stops tracing, waiting at most `timeoutMs` (spans not
 * sent by then are dropped). Resolves in any case; a no-op when tracing is off.
 */
export async function shutdownTracing({ timeoutMs = 5000 }: { timeoutMs?: number } = {}): Promise<void> {
  await state.starting?.catch(() => {});
  const provider = state.provider;
  if (!provider) return;
  state.provider = undefined;
  state.tracers.clear();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      provider.shutdown().catch(() => {}),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
        timer.unref();
      }),
    ]);
  } finally {
    clearTimeout(timer);
    trace.disable();
    propagation.disable();
    context.disable();
    diag.disable();
  }
}

/** Sends the spans buffered so far (tests, before reading a receiver). */
export async function flushTracing(): Promise<void> {
  await state.provider?.forceFlush();
}

/** True while tracing runs. */
export function tracingEnabled(): boolean {
  return state.provider !== undefined;
}

/**
 * The tracer of an instrumentation scope (e.g. "@sluice/db"), or undefined when tracing is off:
 * callers skip all span work then, which is what keeps tracing free when it is not configured.
 */
export function tracerFor(scope: string): Tracer | undefined {
  if (!state.provider) return undefined;
  const cached = state.tracers.get(scope);
  if (cached?.generation === state.generation) return cached.tracer;
  const tracer = trace.getTracer(scope);
  state.tracers.set(scope, { generation: state.generation, tracer });
  return tracer;
}

/**
 * The tracer of `scope` when the active span records (it was sampled), else undefined: the
 * spans beneath a span that is not sampled would not be sampled either (parent-based
 * sampling), so they are not made at all — the cheap path for the 90% a 10% ratio drops.
 */
export function recordingTracerFor(scope: string): Tracer | undefined {
  const tracer = tracerFor(scope);
  if (!tracer) return undefined;
  return trace.getActiveSpan()?.isRecording() ? tracer : undefined;
}

const TRACEPARENT_RE = /^00-([\da-f]{32})-([\da-f]{16})-([\da-f]{2})$/;

/** A span context as a W3C `traceparent` header value (version 00). */
export function formatTraceparent(sc: SpanContext): string {
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}

/**
 * Parses a W3C `traceparent` (version 00) into a remote span context; undefined when it is not
 * one (or carries the all-zero ids the spec calls invalid).
 */
export function parseTraceparent(text: string | null | undefined): SpanContext | undefined {
  if (!text) return undefined;
  const m = TRACEPARENT_RE.exec(text);
  if (!m) return undefined;
  const sc: SpanContext = {
    traceId: m[1] as string,
    spanId: m[2] as string,
    traceFlags: Number.parseInt(m[3] as string, 16),
    isRemote: true,
  };
  return isSpanContextValid(sc) ? sc : undefined;
}

/**
 * The trace context a write stores with its changes (the `sluice.trace_id` setting of the
 * request transaction): `span`'s when given, else the active span's (valid even when not
 * sampled; the flags say so), else `fallback` (the caller's own traceparent or trace id, when
 * tracing is off). Empty when there is none.
 */
export function writerTraceContext(
  fallback: string | undefined,
  span?: { spanContext(): SpanContext },
): string {
  if (state.provider) {
    const sc = (span ?? trace.getActiveSpan())?.spanContext();
    if (sc && isSpanContextValid(sc)) return formatTraceparent(sc);
  }
  return fallback ?? '';
}

/**
 * An async iterator whose every step (next, return, throw) runs in `ctx`. A handler that is an
 * async generator runs its code when it is stepped, in the stepping caller's context, not in the
 * one it was created in: wrapping it makes the RPC's span the active one across every yield.
 */
export function bindIterator<T, TReturn, TNext>(
  ctx: Context,
  iterator: AsyncGenerator<T, TReturn, TNext>,
): AsyncGenerator<T, TReturn, TNext> {
  const bound: AsyncGenerator<T, TReturn, TNext> = {
    next: (...args) => context.with(ctx, () => iterator.next(...args)),
    return: (value) => context.with(ctx, () => iterator.return(value)),
    throw: (error) => context.with(ctx, () => iterator.throw(error)),
    [Symbol.asyncIterator]: () => bound,
  };
  return bound;
}
