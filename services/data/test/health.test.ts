import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { createTestDatabase, REFERENCE_MIGRATIONS_DIR, type TestDatabase } from '@sluice/testing';
import { type Channel, createChannel, createClient } from 'nice-grpc';
import { HealthDefinition } from 'nice-grpc-server-health';
import { HealthCheckResponse_ServingStatus } from 'nice-grpc-server-health/lib/proto/grpc/health/v1/health';
import { ServerReflectionService } from 'nice-grpc-server-reflection';
import {
  ServerReflectionRequest,
  type ServerReflectionResponse,
} from 'nice-grpc-server-reflection/lib/proto/grpc/reflection/v1/reflection_pb';
import { afterAll, describe, expect, it } from 'vitest';
import { loadDataConfig } from '../src/config';
import { type DataServer, type StartOptions, startDataServer } from '../src/server';
import { TEST_JWT_SECRET } from './helpers';

const SERVICE = 'sluice.data.v1.DataService';
const { SERVING, NOT_SERVING } = HealthCheckResponse_ServingStatus;

interface Running {
  readonly db: TestDatabase;
  readonly server: DataServer;
  readonly channel: Channel;
}
const running: Running[] = [];
const tempDirs: string[] = [];

/** A data server over a fresh test database, started with `options` (startStack has none). */
async function start(options: StartOptions = {}): Promise<Running> {
  const db = await createTestDatabase();
  const config = loadDataConfig({
    DATABASE_URL: db.appUrl,
    DATA_GRPC_ADDRESS: '127.0.0.1:0',
    JWT_SECRET: TEST_JWT_SECRET,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    SHUTDOWN_GRACE_MS: '1000',
  });
  const server = await startDataServer(config, options);
  const r = { db, server, channel: createChannel(`127.0.0.1:${server.port}`) };
  running.push(r);
  return r;
}

/** Polls the health Check of the data service until it reports `want` (or 5 s pass). */
async function waitForStatus(channel: Channel, want: HealthCheckResponse_ServingStatus) {
  const health = createClient(HealthDefinition, channel);
  let last: unknown;
  for (let i = 0; i < 100; i++) {
    try {
      const { status } = await health.check({ service: SERVICE });
      if (status === want) return status;
      last = status;
    } catch (error) {
      last = error; // NOT_FOUND until the readiness watcher reports for the first time
    }
    await delay(50);
  }
  throw new Error(`health never became ${HealthCheckResponse_ServingStatus[want]}; last: ${String(last)}`);
}

afterAll(async () => {
  for (const r of running) {
    r.channel.close();
    await r.server.close();
    await r.db.drop();
  }
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

describe('health', () => {
  it('reports SERVING for the data service when the database answers', async () => {
    const { channel } = await start();
    expect(await waitForStatus(channel, SERVING)).toBe(SERVING);
    // The overall server status ("") is SERVING too.
    const overall = await createClient(HealthDefinition, channel).check({ service: '' });
    expect(overall.status).toBe(SERVING);
  });

  it('with a migrations folder: SERVING when the database is at its latest migration', async () => {
    const { channel } = await start({ migrationsDir: REFERENCE_MIGRATIONS_DIR });
    expect(await waitForStatus(channel, SERVING)).toBe(SERVING);
  });

  it('with a migrations folder: NOT_SERVING while a migration is pending', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sluice-migrations-'));
    tempDirs.push(dir);
    cpSync(REFERENCE_MIGRATIONS_DIR, dir, { recursive: true });
    writeFileSync(path.join(dir, '000099_pending.up.sql'), 'select 1;\n');
    writeFileSync(path.join(dir, '000099_pending.down.sql'), 'select 1;\n');
    const { channel } = await start({ migrationsDir: dir });
    expect(await waitForStatus(channel, NOT_SERVING)).toBe(NOT_SERVING);
  });
});

describe('server reflection', () => {
  it('lists the data service and health', async () => {
    const { server } = running[0] ?? (await start());
    const Client = grpc.makeGenericClientConstructor(ServerReflectionService, 'ServerReflection');
    const client = new Client(
      `127.0.0.1:${server.port}`,
      grpc.credentials.createInsecure(),
    ) as unknown as grpc.Client & {
      serverReflectionInfo(): grpc.ClientDuplexStream<ServerReflectionRequest, ServerReflectionResponse>;
    };
    try {
      const call = client.serverReflectionInfo();
      const response = new Promise<ServerReflectionResponse>((resolve, reject) => {
        call.once('data', resolve);
        call.once('error', reject);
      });
      const request = new ServerReflectionRequest();
      request.setListServices('*');
      call.write(request);
      const services = (await response)
        .getListServicesResponse()
        ?.getServiceList()
        .map((s) => s.getName());
      call.end();
      expect(services).toEqual(expect.arrayContaining([SERVICE, 'grpc.health.v1.Health']));
    } finally {
      client.close();
    }
  });
});
