import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import {
  createTestDatabase,
  REFERENCE_MIGRATIONS_DIR,
  TEST_JWT_SECRET,
  type TestDatabase,
} from '@sluice/testing';
import { type Channel, createChannel, createClient } from 'nice-grpc';
import { HealthDefinition } from 'nice-grpc-server-health';
import { HealthCheckResponse_ServingStatus } from 'nice-grpc-server-health/lib/proto/grpc/health/v1/health';
import { afterAll, describe, expect, it } from 'vitest';
import { loadEventsConfig } from '../src/config';
import { type EventsServer, type StartEventsOptions, startEventsServer } from '../src/server';

// The events service reports SERVING only when its database answers with the migrations
// current (core, and the application's when a folder is given), like the data service.

const SERVICE = 'sluice.events.v1.EventsService';
const { SERVING, NOT_SERVING } = HealthCheckResponse_ServingStatus;
const running: { db: TestDatabase; server: EventsServer; channel: Channel }[] = [];
const tempDirs: string[] = [];

async function start(options: StartEventsOptions = {}): Promise<Channel> {
  const db = await createTestDatabase();
  const server = await startEventsServer(
    loadEventsConfig({
      DATABASE_URL: db.appUrl,
      EVENTS_GRPC_ADDRESS: '127.0.0.1:0',
      JWT_SECRET: TEST_JWT_SECRET,
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
      SHUTDOWN_GRACE_MS: '1000',
    }),
    options,
  );
  const channel = createChannel(`127.0.0.1:${server.port}`);
  running.push({ db, server, channel });
  return channel;
}

async function statusOf(channel: Channel): Promise<HealthCheckResponse_ServingStatus | string> {
  try {
    return (await createClient(HealthDefinition, channel).check({ service: SERVICE })).status;
  } catch (error) {
    return String(error); // NOT_FOUND until the first readiness check has reported
  }
}

/** Polls the health of the events service until it reports `want` (or 5 s pass). */
async function waitForStatus(channel: Channel, want: HealthCheckResponse_ServingStatus) {
  let last: unknown;
  for (let i = 0; i < 100; i++) {
    last = await statusOf(channel);
    if (last === want) return last;
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

describe('events health', () => {
  it('SERVING when the database answers and the migrations are current', async () => {
    expect(await waitForStatus(await start({ migrationsDir: REFERENCE_MIGRATIONS_DIR }), SERVING)).toBe(
      SERVING,
    );
  });

  it('NOT_SERVING while an application migration is pending, and never SERVING meanwhile', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sluice-migrations-'));
    tempDirs.push(dir);
    cpSync(REFERENCE_MIGRATIONS_DIR, dir, { recursive: true });
    writeFileSync(path.join(dir, '000099_pending.up.sql'), 'select 1;\n');
    writeFileSync(path.join(dir, '000099_pending.down.sql'), 'select 1;\n');
    const channel = await start({ migrationsDir: dir });
    expect(await waitForStatus(channel, NOT_SERVING)).toBe(NOT_SERVING);
    await delay(300);
    expect(await statusOf(channel)).toBe(NOT_SERVING);
  });
});
