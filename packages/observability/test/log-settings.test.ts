import { ConfigError, EnvReader } from '@sluice/core';
import { readLogSettings } from '@sluice/observability';
import { describe, expect, it } from 'vitest';

// LOKI_* settings: off unless LOKI_URL is set, sane defaults, every bad value reported at once.

function read(env: Record<string, string>) {
  const r = new EnvReader(env);
  const settings = readLogSettings(r);
  r.done();
  return settings;
}

function problems(env: Record<string, string>): string[] {
  try {
    read(env);
  } catch (error) {
    if (error instanceof ConfigError) return [...error.problems];
    throw error;
  }
  return [];
}

describe('readLogSettings', () => {
  it('ships nothing without LOKI_URL', () => {
    expect(read({})).toEqual({ loki: undefined });
  });

  it('takes a base URL or the push URL, with defaults for batching, timeout and buffer', () => {
    const expected = {
      pushUrl: 'http://loki:3100/loki/api/v1/push',
      basicAuth: undefined,
      tenantId: undefined,
      batchIntervalMs: 1000,
      timeoutMs: 5000,
      maxBufferedLines: 10_000,
      gzip: true,
    };
    expect(read({ LOKI_URL: 'http://loki:3100' }).loki).toEqual(expected);
    expect(read({ LOKI_URL: 'http://loki:3100/' }).loki).toEqual(expected);
    expect(read({ LOKI_URL: 'http://loki:3100/loki/api/v1/push' }).loki).toEqual(expected);
    expect(read({ LOKI_URL: 'https://gw.example/tenant-a' }).loki?.pushUrl).toBe(
      'https://gw.example/tenant-a/loki/api/v1/push',
    );
  });

  it('reads basic auth, tenant and tuning', () => {
    const loki = read({
      LOKI_URL: 'https://logs.example',
      LOKI_USERNAME: '123456',
      LOKI_PASSWORD: 'glc_secret',
      LOKI_TENANT_ID: 'team-a',
      LOKI_BATCH_INTERVAL_MS: '250',
      LOKI_TIMEOUT_MS: '2000',
      LOKI_MAX_BUFFERED_LINES: '500',
      LOKI_GZIP: 'false',
    }).loki;
    expect(loki).toEqual({
      pushUrl: 'https://logs.example/loki/api/v1/push',
      basicAuth: { username: '123456', password: 'glc_secret' },
      tenantId: 'team-a',
      batchIntervalMs: 250,
      timeoutMs: 2000,
      maxBufferedLines: 500,
      gzip: false,
    });
  });

  it('takes credentials written in the URL as basic auth and removes them from the URL', () => {
    const loki = read({ LOKI_URL: 'https://user:p%40ss@logs.example' }).loki;
    expect(loki?.pushUrl).toBe('https://logs.example/loki/api/v1/push');
    expect(loki?.basicAuth).toEqual({ username: 'user', password: 'p@ss' });
  });

  it('reports every bad value at once, never repeating a password', () => {
    const found = problems({
      LOKI_URL: 'ftp://logs.example',
      LOKI_PASSWORD: 'hunter2',
      LOKI_BATCH_INTERVAL_MS: 'soon',
      LOKI_TIMEOUT_MS: '5',
      LOKI_MAX_BUFFERED_LINES: '-1',
    });
    expect(found).toHaveLength(4);
    expect(found.join('\n')).toMatch(/LOKI_URL must be an http or https URL/);
    expect(found.join('\n')).not.toContain('hunter2');
    expect(problems({ LOKI_URL: 'http://loki:3100', LOKI_PASSWORD: 'hunter2' })).toEqual([
      'LOKI_USERNAME and LOKI_PASSWORD go together: set both or neither',
    ]);
    expect(problems({ LOKI_URL: 'not a url' })).toEqual([
      'LOKI_URL must be an http(s) URL such as http://loki:3100',
    ]);
  });

  it('reports Loki settings given without LOKI_URL', () => {
    expect(problems({ LOKI_USERNAME: 'u', LOKI_PASSWORD: 'p', LOKI_TENANT_ID: 't' })).toEqual([
      'LOKI_USERNAME is set but LOKI_URL is not (Loki shipping is off)',
      'LOKI_PASSWORD is set but LOKI_URL is not (Loki shipping is off)',
      'LOKI_TENANT_ID is set but LOKI_URL is not (Loki shipping is off)',
    ]);
  });
});
