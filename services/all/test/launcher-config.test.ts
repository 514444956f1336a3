import { ConfigError } from '@sluice/core';
import { describe, expect, it } from 'vitest';
import { loadLauncherConfig } from '../src/config';

describe('SLUICE_SERVICES', () => {
  it('runs every service by default, in start order', () => {
    expect(loadLauncherConfig({}, '/app').services).toEqual(['data', 'events', 'webhooks']);
  });

  it('chooses services (one Fly process group each), in start order whatever the list order', () => {
    expect(loadLauncherConfig({ SLUICE_SERVICES: 'events' }, '/app').services).toEqual(['events']);
    expect(loadLauncherConfig({ SLUICE_SERVICES: ' webhooks, events , data ' }, '/app').services).toEqual([
      'data',
      'events',
      'webhooks',
    ]);
  });

  it('refuses unknown names and an empty choice', () => {
    expect(() => loadLauncherConfig({ SLUICE_SERVICES: 'data,webhook' }, '/app')).toThrow(
      /SLUICE_SERVICES must list services among data, events, webhooks, got "webhook"/,
    );
    expect(() => loadLauncherConfig({ SLUICE_SERVICES: ',' }, '/app')).toThrow(ConfigError);
  });
});

describe('NODE_ENV=production', () => {
  it('requires DATABASE_URL: the embedded PostgreSQL (and its binaries) is for local use', () => {
    expect(() => loadLauncherConfig({ NODE_ENV: 'production' }, '/app')).toThrow(
      /DATABASE_URL is required when NODE_ENV=production/,
    );
    expect(
      loadLauncherConfig({ NODE_ENV: 'production', DATABASE_URL: 'postgres://db/app' }, '/app').databaseUrl,
    ).toBe('postgres://db/app');
  });
});
