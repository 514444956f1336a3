import { type Authenticator, createAuthenticator } from '@sluice/auth';
import {
  CatalogWatcher,
  createPool,
  Database,
  databaseReady,
  poolConnectionString,
  type SchemaCatalog,
  watchReadiness,
} from '@sluice/db';
import {
  type AuthenticatedContext,
  authMiddleware,
  createGrpcServer,
  type SluiceCallContext,
  type SluiceGrpcServer,
} from '@sluice/grpc';
import { createLogger, registerPool, startTracing } from '@sluice/observability';
import type { ServerAddBuilder } from 'nice-grpc';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { GrpcServiceSettings } from './settings';

export interface GrpcServiceOptions {
  /** A logger to use instead of creating one (tests, or a process-wide logger). */
  readonly logger?: Logger;
  /** The application's migrations folder: readiness also waits for them to be current. */
  readonly migrationsDir?: string;
}

/** What a service's `setup` gets: the shared parts, built and owned by the runtime. */
export interface ServiceParts {
  readonly logger: Logger;
  readonly pool: pg.Pool;
  readonly db: Database;
  /** The current schema catalog (reloaded after DDL). */
  readonly catalog: () => SchemaCatalog;
  readonly server: SluiceGrpcServer;
  /** `server.services` with JWT authentication in front: add the service's handlers here. */
  readonly authenticated: ServerAddBuilder<SluiceCallContext & AuthenticatedContext>;
  /** Runs after each catalog reload (statements planned for the old schema are already dropped). */
  onCatalogReload(listener: () => void): void;
  /**
   * Runs at shutdown after the gRPC server has drained and before the pool closes, in the
   * reverse order of registration (what started last stops first).
   */
  onClose(closer: () => void | Promise<void>): void;
}

export interface GrpcServiceSpec<S extends GrpcServiceSettings> {
  /** Short name: the `service` of log lines and the pool's metrics label ("data", "events"). */
  readonly name: string;
  /** Fully-qualified gRPC service name, for health and reflection. */
  readonly grpcService: string;
  readonly settings: S;
  /** Statement timeout of the Database (the data service's is configurable). */
  readonly statementTimeoutMs: number;
  /** Adds the service's handlers and starts its own parts (feeds, timers). */
  setup(parts: ServiceParts): void | Promise<void>;
}

/** A running gRPC service, as the process (or a test) holds it. */
export interface RunningService {
  readonly name: string;
  /** The port the gRPC server listens on (useful with port 0). */
  readonly port: number;
  readonly logger: Logger;
  /** Database reachable and migrations current, as last checked; false once draining. */
  ready(): boolean;
  /** Graceful stop: not ready, drain calls (bounded), end streams, stop the service's parts, close pools. */
  close(): Promise<void>;
}

/**
 * The one bootstrap of a Sluice gRPC service: logger → tracing → pool → Database → schema catalog (live
 * reload) → JWT authentication → gRPC server (health, reflection) → the service's own parts →
 * listen → health from the database; and the one shutdown, in reverse. Health and readiness
 * turn SERVING only while the database answers with its migrations current.
 */
export async function startGrpcService<S extends GrpcServiceSettings>(
  spec: GrpcServiceSpec<S>,
  options: GrpcServiceOptions = {},
): Promise<RunningService> {
  const { settings } = spec;
  const logger =
    options.logger ??
    createLogger({
      service: spec.name,
      level: settings.logLevel,
      env: settings.env,
      loki: settings.log.loki,
    });
  // One tracer provider per process: a no-op when the --import preload (or another service of
  // this process) started it already.
  await startTracing({ settings: settings.tracing, serviceName: 'sluice', logger });
  const closers: Array<() => void | Promise<void>> = [];
  const reloadListeners: Array<() => void> = [];
  // Everything started so far is stopped again when a later step fails, so a failed start
  // leaves no pool, session or timer behind.
  const stopStarted = async () => {
    for (const closer of closers.splice(0).reverse()) {
      await Promise.resolve()
        .then(closer)
        .catch((err: unknown) => logger.error({ err }, `${spec.name}: stopping a part failed`));
    }
  };
  try {
    const { preparedStatements, idleInTransactionTimeoutMs: _, breaker, ...poolSettings } = settings.pool;
    const pool = createPool({
      ...poolSettings,
      connectionString: poolConnectionString(settings.databaseUrl, settings.pool),
      applicationName: `sluice-${spec.name}`,
    });
    const unregisterPool = registerPool(spec.name, pool);
    const db = new Database(pool, {
      statementTimeoutMs: spec.statementTimeoutMs,
      preparedStatementsPerConnection: preparedStatements,
      breaker,
      logger,
    });
    closers.push(async () => {
      await db.close();
      unregisterPool();
    });
    const catalog = await CatalogWatcher.start({
      // Its LISTEN needs a session of its own: not through a transaction-mode pooler.
      connectionString: settings.sessionDatabaseUrl,
      schemas: settings.schemas,
      roles: settings.auth.allowedRoles,
      logger,
      onReload: () => {
        db.invalidateStatements();
        for (const listener of reloadListeners) listener();
      },
    });
    closers.push(() => catalog.close());
    const authenticator: Authenticator = createAuthenticator(settings.auth);
    closers.push(() => authenticator.close());
    const server = createGrpcServer({
      logger,
      maxReceiveMessageBytes: settings.maxMessageBytes,
      maxSendMessageBytes: settings.maxMessageBytes,
      reflectionServices: [spec.grpcService],
    });
    // Until setup has added the handlers and the database is checked, health says NOT_SERVING.
    server.health.setStatus('unhealthy', spec.grpcService);
    await spec.setup({
      logger,
      pool,
      db,
      catalog: () => catalog.current,
      server,
      authenticated: server.services.with(
        authMiddleware((header, o) => authenticator.authenticate(header, o)),
      ),
      onCatalogReload: (listener) => reloadListeners.push(listener),
      // Stopped before the shared parts, in reverse; also when setup itself fails halfway.
      onClose: (closer) => closers.push(closer),
    });
    await warnIfSuperuser(pool, logger);
    const port = await server.listen(settings.grpcAddress);
    logger.info({ address: settings.grpcAddress, port }, `${spec.name} service listening`);

    let ready = false;
    let closing: Promise<void> | undefined;
    const stopHealth = new AbortController();
    void watchReadiness(
      () => databaseReady(settings.databaseUrl, options.migrationsDir),
      (now) => {
        if (now !== ready) logger.info({ ready: now }, `${spec.name} service ${now ? 'ready' : 'not ready'}`);
        ready = now;
        server.health.setStatus(now ? 'healthy' : 'unhealthy', spec.grpcService);
      },
      stopHealth.signal,
      // Checked every 5 s while ready (a lost database shows in /readyz within that), every 2 s
      // while not (recovery shows quickly). Each check is one short session.
      { readyMs: 5_000, notReadyMs: 2_000 },
    );

    return {
      name: spec.name,
      port,
      logger,
      ready: () => ready && !closing,
      close() {
        closing ??= (async () => {
          stopHealth.abort();
          ready = false;
          server.health.setStatus('unhealthy', spec.grpcService);
          // Drain: new calls are refused, running ones get the grace period, streams end with
          // their positions (the services watch `server.draining`).
          await server.shutdown(settings.shutdownGraceMs);
          await stopStarted();
          logger.info(`${spec.name} service stopped`);
        })();
        return closing;
      },
    };
  } catch (error) {
    await stopStarted();
    throw error;
  }
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
