import { createHash } from 'node:crypto';
import { deepFreeze, type Env, EnvReader } from '@sluice/core';
import { type GrpcServiceSettings, readGrpcServiceSettings } from '@sluice/runtime';

/** Everything the events service reads from its environment, validated and frozen at startup. */
export interface EventsConfig extends GrpcServiceSettings {
  /** Key that signs positions, so a forged position is refused. Shared by every instance. */
  readonly positionSecret: string;
  readonly feed: {
    readonly batchSize: number;
    readonly probeIntervalMs: number;
    readonly pollIntervalMs: number;
  };
  readonly stream: {
    readonly heartbeatMs: number;
    /** Events buffered per stream before a slow reader is ended with RESOURCE_EXHAUSTED. */
    readonly bufferEvents: number;
    readonly bufferBytes: number;
    readonly snapshotMaxRows: number;
    /** A snapshot still reading after this ends with DEADLINE_EXCEEDED and releases its connection. */
    readonly snapshotTimeoutMs: number;
    readonly maxTablesPerSubscription: number;
  };
  /**
   * Concurrent Subscribe calls, and snapshots being read (each holds a pooled connection in a
   * REPEATABLE READ transaction), per identity (role + `sub`; service_role is bounded by the
   * total only) and in total. Beyond either: RESOURCE_EXHAUSTED at once.
   */
  readonly limits: {
    readonly subscriptionsPerIdentity: number;
    readonly subscriptions: number;
    readonly snapshotsPerIdentity: number;
    readonly snapshots: number;
  };
  readonly retention: {
    readonly maxAgeMs: number;
    readonly intervalMs: number;
  };
}

/**
 * Reads the events service's configuration (documented in the README, "Configuration").
 *
 * @throws ConfigError listing every problem.
 */
export function loadEventsConfig(env: Env): EventsConfig {
  const r = new EnvReader(env);
  const base = readGrpcServiceSettings(r, { variable: 'EVENTS_GRPC_ADDRESS', fallback: '127.0.0.1:50052' });
  const { auth, pool } = base;
  let positionSecret = r.string('EVENTS_POSITION_SECRET');
  if (!positionSecret && auth.jwtSecret) {
    // Derived, not reused: the JWT secret itself never signs anything but tokens.
    positionSecret = createHash('sha256').update(`sluice-positions:${auth.jwtSecret}`).digest('base64url');
  }
  if (!positionSecret) r.problem('EVENTS_POSITION_SECRET is required when JWT_SECRET is not set');
  const subscriptions = r.int('EVENTS_MAX_SUBSCRIPTIONS', 10_000, { min: 1 });
  // Half the pool by default: the feed, visibility checks and catch-up reads need the rest.
  const snapshots = r.int('EVENTS_MAX_SNAPSHOTS', Math.max(1, Math.floor(pool.max / 2)), { min: 1 });
  const limits = {
    subscriptionsPerIdentity: r.int('EVENTS_MAX_SUBSCRIPTIONS_PER_IDENTITY', Math.min(100, subscriptions), {
      min: 1,
    }),
    subscriptions,
    snapshotsPerIdentity: r.int('EVENTS_MAX_SNAPSHOTS_PER_IDENTITY', Math.min(2, snapshots), { min: 1 }),
    snapshots,
  };
  if (limits.subscriptionsPerIdentity > limits.subscriptions) {
    r.problem('EVENTS_MAX_SUBSCRIPTIONS_PER_IDENTITY must not exceed EVENTS_MAX_SUBSCRIPTIONS');
  }
  if (limits.snapshotsPerIdentity > limits.snapshots) {
    r.problem('EVENTS_MAX_SNAPSHOTS_PER_IDENTITY must not exceed EVENTS_MAX_SNAPSHOTS');
  }
  if (limits.snapshots > pool.max) r.problem('EVENTS_MAX_SNAPSHOTS must not exceed DB_POOL_MAX');
  const config: EventsConfig = {
    ...base,
    positionSecret: positionSecret ?? '',
    feed: {
      batchSize: r.int('EVENTS_BATCH_SIZE', 1000, { min: 1, max: 100_000 }),
      probeIntervalMs: r.int('EVENTS_PROBE_INTERVAL_MS', 5, { min: 0, max: 60_000 }),
      pollIntervalMs: r.int('EVENTS_POLL_INTERVAL_MS', 500, { min: 10 }),
    },
    stream: {
      heartbeatMs: r.int('EVENTS_HEARTBEAT_MS', 10_000, { min: 100 }),
      bufferEvents: r.int('EVENTS_BUFFER_EVENTS', 1000, { min: 1 }),
      bufferBytes: r.int('EVENTS_BUFFER_BYTES', 4 * 1024 * 1024, { min: 1024 }),
      snapshotMaxRows: r.int('EVENTS_SNAPSHOT_MAX_ROWS', 100_000, { min: 1 }),
      snapshotTimeoutMs: r.int('EVENTS_SNAPSHOT_TIMEOUT_MS', 30_000, { min: 10, max: 3_600_000 }),
      maxTablesPerSubscription: r.int('EVENTS_MAX_TABLES', 32, { min: 1 }),
    },
    retention: {
      maxAgeMs: r.int('EVENTS_RETENTION_HOURS', 168, { min: 1 }) * 3600_000,
      intervalMs: r.int('EVENTS_RETENTION_INTERVAL_MS', 60_000, { min: 100 }),
    },
    limits,
  };
  r.done();
  return deepFreeze(config);
}
