import path from 'node:path';
import { deepFreeze, type Env, EnvReader } from '@sluice/core';
import { type LogSettings, readLogSettings } from '@sluice/observability';

/** The services the launcher runs, in start order (SLUICE_SERVICES chooses among them). */
export const SERVICE_NAMES = ['data', 'events', 'webhooks'] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];

/** Settings of the all-in-one launcher (`npm start`); each service reads its own on top. */
export interface LauncherConfig {
  readonly projectRoot: string;
  /** External PostgreSQL; when unset, an embedded one is started. */
  readonly databaseUrl: string | undefined;
  /** URL used to run migrations (an owner/superuser); defaults to databaseUrl. */
  readonly migrateDatabaseUrl: string | undefined;
  readonly migrateOnStart: boolean;
  readonly migrationsDir: string;
  /** Load db/seed.sql into an empty database (default on for the embedded database only). */
  readonly seedDemoData: boolean;
  readonly embedded: {
    readonly dataDir: string;
    readonly port: number;
    readonly database: string;
  };
  readonly logLevel: string;
  /** host:port of the ops HTTP listener (/healthz, /readyz, /metrics); empty: none. */
  readonly opsHttpAddress: string;
  /** A graceful stop taking longer than this exits anyway: the drain grace plus 15 s to close. */
  readonly stopTimeoutMs: number;
  /** LOKI_*: the launcher's own lines are shipped like the services'. */
  readonly log: LogSettings;
  /**
   * The services this process runs (SLUICE_SERVICES, comma-separated; default all of
   * SERVICE_NAMES), in start order: one per Fly process group from the same image.
   */
  readonly services: readonly ServiceName[];
  /**
   * WEBHOOKS_DEMO_RECEIVER_ADDRESS: host:port of the demo endpoint receiver `npm start` runs on the
   * embedded database (default 127.0.0.1:8081; empty: no demo source and endpoint).
   */
  readonly webhooksDemoAddress: string;
}

export function loadLauncherConfig(env: Env, projectRoot: string): LauncherConfig {
  const r = new EnvReader(env);
  const databaseUrl = r.url('DATABASE_URL');
  if (!databaseUrl && r.string('NODE_ENV') === 'production')
    r.problem('DATABASE_URL is required when NODE_ENV=production (the embedded PostgreSQL is for local use)');
  const config: LauncherConfig = {
    projectRoot,
    databaseUrl,
    migrateDatabaseUrl: r.url('MIGRATE_DATABASE_URL') ?? databaseUrl,
    migrateOnStart: r.bool('MIGRATE_ON_START', true),
    migrationsDir: path.resolve(projectRoot, r.string('MIGRATIONS_DIR', 'migrations')),
    seedDemoData: r.bool('SEED_DEMO_DATA', databaseUrl === undefined),
    embedded: {
      dataDir: path.resolve(projectRoot, r.string('SLUICE_DATA_DIR', '.sluice/postgres')),
      port: r.int('EMBEDDED_PG_PORT', 54329, { min: 1, max: 65535 }),
      database: r.string('EMBEDDED_PG_DATABASE', 'sluice'),
    },
    logLevel: r.string('LOG_LEVEL', 'info'),
    opsHttpAddress: r.string('OPS_HTTP_ADDRESS', '127.0.0.1:9464'),
    stopTimeoutMs: r.int('SHUTDOWN_GRACE_MS', 10_000) + 15_000,
    log: readLogSettings(r),
    services: readServices(r),
    webhooksDemoAddress: r.string('WEBHOOKS_DEMO_RECEIVER_ADDRESS', '127.0.0.1:8081'),
  };
  if (config.opsHttpAddress !== '' && !/^(\[[^\]]+\]|[^:]*):\d{1,5}$/.test(config.opsHttpAddress))
    r.problem(`OPS_HTTP_ADDRESS must be host:port (or empty for none), got "${config.opsHttpAddress}"`);
  r.done();
  return deepFreeze(config);
}

function readServices(r: EnvReader): readonly ServiceName[] {
  const listed = r.list('SLUICE_SERVICES', SERVICE_NAMES);
  const unknown = listed.filter((name) => !(SERVICE_NAMES as readonly string[]).includes(name));
  if (unknown.length > 0)
    r.problem(
      `SLUICE_SERVICES must list services among ${SERVICE_NAMES.join(', ')}, got "${unknown.join(', ')}"`,
    );
  const services = SERVICE_NAMES.filter((name) => listed.includes(name));
  if (services.length === 0 && unknown.length === 0)
    r.problem('SLUICE_SERVICES must name at least one service');
  return services;
}
