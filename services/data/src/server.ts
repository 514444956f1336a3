import { createAuthenticator } from '@sluice/auth';
import { ConcurrencyLimit } from '@sluice/core';
import {
  CatalogWatcher,
  createPool,
  Database,
  databaseReady,
  poolConnectionString,
  watchReadiness,
} from '@sluice/db';
import { authMiddleware, createGrpcServer } from '@sluice/grpc';
import { createLogger, registerPool } from '@sluice/observability';
import { data } from '@sluice/proto';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { DataConfig } from './config';
import { createDataService } from './data-service';

export interface DataServer {
  /** The port the gRPC server listens on (useful with port 0). */
  readonly port: number;
  readonly logger: Logger;
  /** Graceful stop: refuse new calls, let running ones finish (bounded), close pools. */
  close(): Promise<void>;
}

export interface StartOptions {
  readonly logger?: Logger;
  /** Folder of the user's migrations, for the health check's "migrations current". */
  readonly migrationsDir?: string;
}

const SERVICE_NAME = data.DataServiceDefinition.fullName;

/**
 * Composes the data service: pool and request executor, schema catalog with live reload, JWT
 * authentication, and the gRPC server with health and reflection. Health turns SERVING for
 * `sluice.data.v1.DataService` once the database answers and (if `migrationsDir` is given) its
 * migrations are current.
 */
export async function startDataServer(config: DataConfig, options: StartOptions = {}): Promise<DataServer> {
  const logger = options.logger ?? createLogger({ service: 'data', level: config.logLevel, env: config.env });
  const pool = createPool({
    connectionString: poolConnectionString(config.databaseUrl, config.pool),
    applicationName: 'sluice-data',
    ...config.pool,
  });
  const unregisterPool = registerPool('data', pool);
  const db = new Database(pool, {
    statementTimeoutMs: config.limits.statementTimeoutMs,
    preparedStatementsPerConnection: config.pool.preparedStatements,
  });
  const catalog = await CatalogWatcher.start({
    connectionString: config.databaseUrl,
    schemas: config.schemas,
    roles: config.auth.allowedRoles,
    logger,
    onReload: () => db.invalidateStatements(),
  });
  const authenticator = createAuthenticator(config.auth);
  const server = createGrpcServer({
    logger,
    maxReceiveMessageBytes: config.maxMessageBytes,
    maxSendMessageBytes: config.maxMessageBytes,
    reflectionServices: [SERVICE_NAME],
  });
  server.services.with(authMiddleware((header, o) => authenticator.authenticate(header, o))).add(
    data.DataServiceDefinition,
    createDataService({
      db,
      catalog: () => catalog.current,
      limits: config.limits,
      longCalls: new ConcurrencyLimit({
        kind: 'streams and transactions',
        ...config.longCalls,
        // Trusted backends (the service key bypasses RLS): bounded by the total only.
        uncappedRoles: ['service_role'],
      }),
    }),
  );
  await warnIfSuperuser(pool, logger);
  const port = await server.listen(config.grpcAddress);
  logger.info({ address: config.grpcAddress, port }, 'data service listening');

  const stopHealth = new AbortController();
  void watchReadiness(
    () => databaseReady(config.databaseUrl, options.migrationsDir),
    (ready) => server.health.setStatus(ready ? 'healthy' : 'unhealthy', SERVICE_NAME),
    stopHealth.signal,
  );

  return {
    port,
    logger,
    async close() {
      stopHealth.abort();
      await server.shutdown(config.shutdownGraceMs);
      authenticator.close();
      await catalog.close();
      await db.close();
      unregisterPool();
      logger.info('data service stopped');
    },
  };
}

/**
 * Requests always switch to an allowlisted role, but a superuser login could switch back
 * (RESET ROLE inside a function): say so loudly. The core migration provides sluice_authenticator.
 */
async function warnIfSuperuser(pool: pg.Pool, logger: Logger): Promise<void> {
  const { rows } = await pool.query<{ usename: string; usesuper: string }>(
    'select usename, usesuper::text from pg_user where usename = current_user',
  );
  if (rows[0]?.usesuper === 'true') {
    logger.warn(
      { user: rows[0].usename },
      'DATABASE_URL logs in as a superuser; connect as sluice_authenticator (or another non-superuser granted anon, authenticated and service_role)',
    );
  }
}
