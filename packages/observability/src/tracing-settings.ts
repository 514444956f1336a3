import { type Env, EnvReader } from '@sluice/core';

/** The OTEL_TRACES_SAMPLER values Sluice supports (the SDK's built-in samplers). */
export type SamplerName =
  | 'always_on'
  | 'always_off'
  | 'traceidratio'
  | 'parentbased_always_on'
  | 'parentbased_always_off'
  | 'parentbased_traceidratio';

const SAMPLERS: readonly SamplerName[] = [
  'always_on',
  'always_off',
  'traceidratio',
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
];

/** Where spans are sent: an OTLP/HTTP traces endpoint. */
export interface OtlpTraceExport {
  /** The full traces URL (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or the base endpoint + `/v1/traces`). */
  readonly url: string;
  readonly protocol: 'http/protobuf' | 'http/json';
  /** Sent with every export (e.g. an API key); never logged. */
  readonly headers: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
}

/** Tracing as the standard OTEL_* variables configure it. */
export interface TracingSettings {
  /** False unless an OTLP endpoint is set, or when OTEL_SDK_DISABLED / OTEL_TRACES_EXPORTER=none say so. */
  readonly enabled: boolean;
  /** OTEL_SDK_DISABLED=true: no tracing at all, whatever else is set. */
  readonly sdkDisabled: boolean;
  /** Absent when tracing is off. */
  readonly export: OtlpTraceExport | undefined;
  /** OTEL_SERVICE_NAME; the service's own name is used when unset. */
  readonly serviceName: string | undefined;
  /** OTEL_RESOURCE_ATTRIBUTES (`key=value,…`, percent-decoded). */
  readonly resourceAttributes: Readonly<Record<string, string>>;
  readonly sampler: SamplerName;
  /** OTEL_TRACES_SAMPLER_ARG for the ratio samplers, 0..1. */
  readonly samplerRatio: number;
  /** The batch span processor (OTEL_BSP_*). */
  readonly batch: {
    readonly scheduledDelayMs: number;
    readonly exportTimeoutMs: number;
    readonly maxQueueSize: number;
    readonly maxExportBatchSize: number;
  };
}

/**
 * Reads the standard OpenTelemetry variables through a service's EnvReader (problems are
 * recorded on the reader): OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER (`otlp` or `none`),
 * OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL
 * (`http/protobuf`, the default, or `http/json`; `grpc` with an endpoint is refused with a clear message),
 * OTEL_EXPORTER_OTLP[_TRACES]_HEADERS and _TIMEOUT, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
 * OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG and OTEL_BSP_*. Tracing is on only when an
 * endpoint is set. Problem messages never repeat a header value.
 */
export function readTracingSettings(r: EnvReader): TracingSettings {
  const disabled = r.bool('OTEL_SDK_DISABLED', false);
  const exporter = r.string('OTEL_TRACES_EXPORTER', 'otlp').toLowerCase();
  if (exporter !== 'otlp' && exporter !== 'none') {
    r.problem(`OTEL_TRACES_EXPORTER must be otlp or none, got "${exporter}"`);
  }
  const tracesEndpoint = r.url('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT');
  const baseEndpoint = r.url('OTEL_EXPORTER_OTLP_ENDPOINT');
  const url = tracesEndpoint ?? (baseEndpoint ? `${baseEndpoint.replace(/\/+$/, '')}/v1/traces` : undefined);
  const protocolVar = r.string('OTEL_EXPORTER_OTLP_TRACES_PROTOCOL')
    ? 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL'
    : 'OTEL_EXPORTER_OTLP_PROTOCOL';
  const rawProtocol = r.string(protocolVar, 'http/protobuf');
  // Refused only where it would be used: a shared environment may name grpc for other programs.
  if (rawProtocol === 'grpc' && url !== undefined && !disabled && exporter === 'otlp') {
    r.problem(
      `${protocolVar}=grpc is not supported: Sluice exports over OTLP/HTTP; set http/protobuf (the default) or http/json and the collector's HTTP endpoint (port 4318)`,
    );
  }
  const protocol = r.oneOf(protocolVar, ['http/protobuf', 'http/json', 'grpc'], 'http/protobuf');
  const headers = {
    ...keyValues(r, 'OTEL_EXPORTER_OTLP_HEADERS', true),
    ...keyValues(r, 'OTEL_EXPORTER_OTLP_TRACES_HEADERS', true),
  };
  const timeoutMs = r.int(
    r.string('OTEL_EXPORTER_OTLP_TRACES_TIMEOUT')
      ? 'OTEL_EXPORTER_OTLP_TRACES_TIMEOUT'
      : 'OTEL_EXPORTER_OTLP_TIMEOUT',
    10_000,
    { min: 1, max: 600_000 },
  );
  const sampler = r.oneOf('OTEL_TRACES_SAMPLER', SAMPLERS, 'parentbased_always_on');
  const rawRatio = r.string('OTEL_TRACES_SAMPLER_ARG');
  let samplerRatio = 1;
  if (rawRatio !== undefined && sampler.endsWith('traceidratio')) {
    const value = Number(rawRatio);
    if (!Number.isFinite(value) || value < 0 || value > 1) {
      r.problem(`OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1, got "${rawRatio}"`);
    } else samplerRatio = value;
  }
  const maxQueueSize = r.int('OTEL_BSP_MAX_QUEUE_SIZE', 2048, { min: 1, max: 1_000_000 });
  const maxExportBatchSize = r.int('OTEL_BSP_MAX_EXPORT_BATCH_SIZE', 512, { min: 1, max: 1_000_000 });
  if (maxExportBatchSize > maxQueueSize) {
    r.problem('OTEL_BSP_MAX_EXPORT_BATCH_SIZE must not be larger than OTEL_BSP_MAX_QUEUE_SIZE');
  }
  const enabled = !disabled && exporter === 'otlp' && url !== undefined && protocol !== 'grpc';
  return {
    enabled,
    sdkDisabled: disabled,
    export:
      enabled && url
        ? { url, protocol: protocol as OtlpTraceExport['protocol'], headers, timeoutMs }
        : undefined,
    serviceName: r.string('OTEL_SERVICE_NAME'),
    resourceAttributes: keyValues(r, 'OTEL_RESOURCE_ATTRIBUTES', false),
    sampler,
    samplerRatio,
    batch: {
      scheduledDelayMs: r.int('OTEL_BSP_SCHEDULE_DELAY', 5000, { min: 1, max: 600_000 }),
      exportTimeoutMs: r.int('OTEL_BSP_EXPORT_TIMEOUT', 30_000, { min: 1, max: 600_000 }),
      maxQueueSize,
      maxExportBatchSize,
    },
  };
}

/**
 * Reads tracing settings from `env` on their own (the `--import` preload, tests).
 * @throws ConfigError listing every problem.
 */
export function loadTracingSettings(env: Env): TracingSettings {
  const r = new EnvReader(env);
  const settings = readTracingSettings(r);
  r.done();
  return settings;
}

/** `key=value,key2=value2` with percent-encoded values (the W3C baggage form OTEL_* lists use). */
function keyValues(r: EnvReader, name: string, secret: boolean): Record<string, string> {
  const raw = r.string(name);
  const out: Record<string, string> = {};
  if (raw === undefined) return out;
  for (const [i, part] of raw.split(',').entries()) {
    if (part.trim() === '') continue;
    const eq = part.indexOf('=');
    const key = eq > 0 ? part.slice(0, eq).trim() : '';
    if (key === '') {
      r.problem(`${name}: entry ${i + 1} must be key=value`);
      continue;
    }
    try {
      out[key] = decodeURIComponent(part.slice(eq + 1).trim());
    } catch {
      r.problem(
        `${name}: the value of ${secret ? `entry ${i + 1}` : `"${key}"`} is not valid percent-encoding`,
      );
    }
  }
  return out;
}
