import { ConfigError } from '@sluice/core';
import { describe, expect, it } from 'vitest';
import { loadTracingSettings } from '../src/tracing-settings';

describe('loadTracingSettings', () => {
  it('is off unless an OTLP endpoint is set', () => {
    const s = loadTracingSettings({});
    expect(s.enabled).toBe(false);
    expect(s.export).toBeUndefined();
    expect(s.sampler).toBe('parentbased_always_on');
  });

  it('sends to <endpoint>/v1/traces over http/protobuf by default', () => {
    const s = loadTracingSettings({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' });
    expect(s.enabled).toBe(true);
    expect(s.export).toEqual({
      url: 'http://collector:4318/v1/traces',
      protocol: 'http/protobuf',
      headers: {},
      timeoutMs: 10_000,
    });
  });

  it('takes the traces endpoint as it is, and the traces-specific protocol, headers and timeout first', () => {
    const s = loadTracingSettings({
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://ignored:4318',
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://otlp.example.com/custom/traces',
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
      OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json',
      OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Basic%20abc,x-a=1',
      OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'x-a=2',
      OTEL_EXPORTER_OTLP_TIMEOUT: '3000',
    });
    expect(s.export).toEqual({
      url: 'https://otlp.example.com/custom/traces',
      protocol: 'http/json',
      headers: { authorization: 'Basic abc', 'x-a': '2' },
      timeoutMs: 3000,
    });
  });

  it('refuses grpc with a message that says what to set instead', () => {
    let error: unknown;
    try {
      loadTracingSettings({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4317',
        OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
      });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems).toEqual([
      expect.stringMatching(/grpc is not supported.*http\/protobuf/),
    ]);
    // Where tracing is off anyway, a grpc setting meant for other programs is no error.
    expect(loadTracingSettings({ OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }).enabled).toBe(false);
  });

  it('reports every bad value at once, never repeating a header value', () => {
    let error: unknown;
    try {
      loadTracingSettings({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'not a url',
        OTEL_TRACES_SAMPLER: 'jaeger_remote',
        OTEL_TRACES_EXPORTER: 'zipkin',
        OTEL_EXPORTER_OTLP_HEADERS: 'api-key=%E0%A4%A',
        OTEL_BSP_MAX_QUEUE_SIZE: '10',
      });
    } catch (e) {
      error = e;
    }
    const problems = (error as ConfigError).problems;
    expect(problems).toHaveLength(5);
    expect(problems.join('\n')).not.toContain('%E0');
  });

  it('reads the sampler, its ratio and the resource', () => {
    const s = loadTracingSettings({
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318',
      OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
      OTEL_TRACES_SAMPLER_ARG: '0.1',
      OTEL_SERVICE_NAME: 'sluice-data',
      OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=production,fly.region=ams',
    });
    expect(s.sampler).toBe('parentbased_traceidratio');
    expect(s.samplerRatio).toBe(0.1);
    expect(s.serviceName).toBe('sluice-data');
    expect(s.resourceAttributes).toEqual({ 'deployment.environment': 'production', 'fly.region': 'ams' });
    expect(() =>
      loadTracingSettings({ OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '1.5' }),
    ).toThrow(/OTEL_TRACES_SAMPLER_ARG/);
  });

  it('is off when OTEL_SDK_DISABLED or OTEL_TRACES_EXPORTER=none, whatever the endpoint', () => {
    const endpoint = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' };
    expect(loadTracingSettings({ ...endpoint, OTEL_SDK_DISABLED: 'true' }).enabled).toBe(false);
    expect(loadTracingSettings({ ...endpoint, OTEL_TRACES_EXPORTER: 'none' }).enabled).toBe(false);
  });
});
