import { fileURLToPath } from 'node:url';
import { signToken } from '@sluice/auth';
import { ConfigError } from '@sluice/core';
import { type DataServer, loadDataConfig, startDataServer } from '@sluice/data-service';
import { coreSchemaKnown, databaseReady, migrateAll, runSqlFile, withSession } from '@sluice/db';
import { type RunningPostgres, startEmbeddedPostgres, viaSocket } from '@sluice/embedded';
import { type EventsServer, loadEventsConfig, startEventsServer } from '@sluice/events-service';
import { createLogger, type OpsServer, startOpsServer } from '@sluice/observability';
import { loadLauncherConfig } from './config';
import { localSecret } from './local-secrets';

/**
 * `npm start`: everything in one process. With no DATABASE_URL it starts an embedded
 * PostgreSQL under .sluice/, migrates it, loads the demo data once and prints demo tokens;
 * with DATABASE_URL it migrates (MIGRATE_ON_START) and serves that database.
 */
const projectRoot = fileURLToPath(new URL('../../../', import.meta.url));
const DEMO_USERS = {
  alice: 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa',
  bob: 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb',
} as const;

async function main(): Promise<void> {
  const launcher = loadLauncherConfig(process.env, projectRoot);
  const log = createLogger({
    service: 'launcher',
    level: launcher.logLevel,
    env: process.env.SLUICE_ENV ?? 'local',
  });
  const env: Record<string, string | undefined> = { ...process.env };
  let embedded: RunningPostgres | undefined;
  let data: DataServer | undefined;
  let events: EventsServer | undefined;
  let ops: OpsServer | undefined;
  let stopping = false;

  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    // /readyz answers 503 from now on (stopping), so a load balancer stops sending calls.
    await Promise.all([
      data?.close().catch((err: unknown) => log.error({ err }, 'data service did not stop cleanly')),
      events?.close().catch((err: unknown) => log.error({ err }, 'events service did not stop cleanly')),
    ]);
    await ops?.close();
    await embedded
      ?.stop()
      .catch((err: unknown) => log.error({ err }, 'embedded PostgreSQL did not stop cleanly'));
    log.info('stopped');
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
  // Last resort: every database failure is handled where it happens (see @sluice/db session.ts),
  // so a promise rejection nobody handled is a bug - logged loudly, but it does not take down
  // every service of this process with it.
  process.on('unhandledRejection', (reason: unknown) => {
    log.error({ err: reason }, 'unhandled promise rejection (a bug: please report it)');
  });

  let migrateUrl = launcher.migrateDatabaseUrl;
  if (!launcher.databaseUrl) {
    log.info(
      { dataDir: launcher.embedded.dataDir, port: launcher.embedded.port },
      'starting embedded PostgreSQL',
    );
    embedded = await startEmbeddedPostgres({
      dataDir: launcher.embedded.dataDir,
      port: launcher.embedded.port,
      persistent: true,
    });
    let superuser = await ensureDatabase(embedded.url, launcher.embedded.database);
    if (!(await coreSchemaKnown(superuser))) {
      // A demo database from before the core migrations were folded: it cannot be migrated on,
      // and it holds nothing but demo data, so it is made afresh (DATABASE_URL databases are not
      // touched: there the migrator's error says which version it does not know).
      log.warn(
        { database: launcher.embedded.database },
        'the embedded database predates the current core migrations; recreating it',
      );
      await withSession(launcherSession(embedded.url), (client) =>
        client.query(`drop database ${client.escapeIdentifier(launcher.embedded.database)} with (force)`),
      );
      superuser = await ensureDatabase(embedded.url, launcher.embedded.database);
    }
    migrateUrl = superuser;
    env.DATABASE_URL = superuser; // replaced by the login role's URL below, once it has a password
    env.JWT_SECRET ??= localSecret(projectRoot, 'jwt-secret');
  }
  if (launcher.migrateOnStart && migrateUrl) {
    const applied = await migrateAll(migrateUrl, {
      userDir: launcher.migrationsDir,
      log: (m) => log.debug(m),
    });
    log.info({ applied: applied.length }, 'migrations current');
  }
  if (launcher.seedDemoData && migrateUrl && (await isEmpty(migrateUrl))) {
    await runSqlFile(migrateUrl, `${projectRoot}db/seed.sql`);
    log.info('demo data loaded');
  }
  if (embedded && migrateUrl) {
    // The service never connects as the superuser: it logs in as sluice_authenticator, through
    // the embedded server's Unix socket (cheaper per round trip than loopback TCP).
    const url = await authenticatorUrl(migrateUrl, localSecret(projectRoot, 'authenticator-password'));
    env.DATABASE_URL = viaSocket(url, embedded.socketDir);
  }

  const dataConfig = loadDataConfig(env);
  const eventsConfig = loadEventsConfig(env);
  data = await startDataServer(dataConfig, { migrationsDir: launcher.migrationsDir });
  events = await startEventsServer(eventsConfig, { migrationsDir: launcher.migrationsDir });
  if (launcher.opsHttpAddress) {
    const databaseUrl = dataConfig.databaseUrl;
    ops = await startOpsServer({
      address: launcher.opsHttpAddress,
      logger: log,
      ready: async () => {
        if (stopping) return { ready: false, reason: 'shutting down' };
        if (!(await databaseReady(databaseUrl, launcher.migrationsDir)))
          return { ready: false, reason: 'database unreachable or migrations not current' };
        return { ready: true };
      },
    });
  }
  if (embedded)
    await printWelcome(dataConfig.grpcAddress, eventsConfig.grpcAddress, dataConfig.auth.jwtSecret);
}

const launcherSession = (connectionString: string) => ({
  connectionString,
  applicationName: 'sluice-launcher',
});

async function ensureDatabase(superuserUrl: string, database: string): Promise<string> {
  await withSession(launcherSession(superuserUrl), async (client) => {
    const exists = await client.query('select 1 from pg_database where datname = $1', [database]);
    if (exists.rowCount === 0) await client.query(`create database ${client.escapeIdentifier(database)}`);
  });
  const url = new URL(superuserUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

async function isEmpty(url: string): Promise<boolean> {
  return withSession(launcherSession(url), async (client) => {
    const r = await client.query(
      "select to_regclass('public.tenants') is not null and not exists (select 1 from public.tenants) as empty",
    );
    return r.rows[0]?.empty === true;
  });
}

async function authenticatorUrl(superuserUrl: string, password: string): Promise<string> {
  await withSession(launcherSession(superuserUrl), (client) =>
    client.query(`alter role sluice_authenticator password ${client.escapeLiteral(password)}`),
  );
  const url = new URL(superuserUrl);
  url.username = 'sluice_authenticator';
  url.password = password;
  return url.toString();
}

async function printWelcome(
  address: string,
  eventsAddress: string,
  secret: string | undefined,
): Promise<void> {
  if (!secret) return;
  const day = 24 * 3600;
  const alice = await signToken(secret, { sub: DEMO_USERS.alice, role: 'authenticated' }, { expiresIn: day });
  const bob = await signToken(secret, { sub: DEMO_USERS.bob, role: 'authenticated' }, { expiresIn: day });
  const service = await signToken(secret, { role: 'service_role' }, { expiresIn: day });
  const lines = [
    '',
    `Sluice is running. Data service (gRPC): ${address}   Events service (gRPC): ${eventsAddress}`,
    '',
    'Demo tokens (valid 24 h):',
    `  alice (admin of Acme):   ${alice}`,
    `  bob (admin of Globex):   ${bob}`,
    `  service_role (no RLS):   ${service}`,
    '',
    'Try it (in another terminal):',
    `  SLUICE_TOKEN=${alice} npx tsx examples/quickstart.ts`,
    `  SLUICE_TOKEN=${alice} npx tsx examples/subscribe.ts     # follow changes to posts, resuming after a disconnect`,
    '',
    'Ctrl-C stops everything.',
    '',
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((error: unknown) => {
  if (error instanceof ConfigError) process.stderr.write(`${error.message}\n`);
  else
    process.stderr.write(
      `sluice failed to start: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
  process.exit(1);
});
