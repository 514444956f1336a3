import { deepFreeze, type Env, EnvReader } from '@sluice/core';
import { type GrpcServiceSettings, readGrpcServiceSettings } from '@sluice/runtime';

/** Inbound webhooks: the HTTP listener, its limits, and the inbox. */
export interface InboundSettings {
  /** host:port of the HTTP listener for POST /webhooks/{source} (port 0: any free port). */
  readonly httpAddress: string;
  /** Largest body a source accepts unless it sets its own (413 beyond). */
  readonly maxBodyBytes: number;
  /**
   * The most any source may set: (MAX_MESSAGE_BYTES − 64 KiB) / 2, so that a consumed event — its
   * body and the same body as JSON text, plus headers — always fits one gRPC message.
   */
  readonly maxSourceBodyBytes: number;
  /** Timestamp skew accepted both ways, for schemes with a timestamp, unless the source sets its own. */
  readonly toleranceSeconds: number;
  /** Requests per second per source unless it sets its own (429 beyond), with a burst of twice that. */
  readonly ratePerSecond: number;
  /** Inbound events (and so their dedupe keys) are kept this long. */
  readonly retentionMs: number;
  /** How often retention runs. */
  readonly retentionIntervalMs: number;
  /** Sent with 503 (database unavailable) and 429 answers when no better value is known. */
  readonly retryAfterSeconds: number;
}

/** Consumers of inbound events (Consume / Ack). */
export interface ConsumerSettings {
  readonly defaultAckTimeoutSeconds: number;
  readonly defaultMaxInFlight: number;
  readonly heartbeatMs: number;
  /** How often a stream with nothing in flight looks for new events besides the LISTEN wake-up. */
  readonly pollIntervalMs: number;
  /** Open Consume streams per identity (role + sub; service_role: the total only) and in total. */
  readonly streamsPerIdentity: number;
  readonly streams: number;
}

/** Outbound deliveries. */
export interface OutboundSettings {
  /** Delay before each attempt after the first failure, in ms (Svix's by default); its length is the number of retries. */
  readonly retryScheduleMs: readonly number[];
  /** Each delay is moved by up to this fraction either way (0.2 = ±20 %). */
  readonly retryJitter: number;
  /** Least delay after a timeout or a 429. */
  readonly minRetryAfterTimeoutMs: number;
  /** Retry-After is honoured up to this. */
  readonly maxRetryAfterMs: number;
  /** Each request's whole time, connection to last byte. */
  readonly requestTimeoutMs: number;
  /** An endpoint whose every attempt has failed for this long is disabled. */
  readonly disableAfterFailingMs: number;
  /** Attempts in flight per process, and per endpoint per process. */
  readonly concurrency: number;
  readonly concurrencyPerEndpoint: number;
  /** Per-endpoint circuit breaker: opens after this many failures in a row, probes after resetMs. */
  readonly breakerFailures: number;
  readonly breakerResetMs: number;
  /**
   * Hosts and networks outbound requests may reach although the SSRF guard would refuse them
   * (loopback, private, link-local…): for local development and tests only. Entries: an IP
   * address, a CIDR block (10.1.0.0/16) or a host name; each may end with :port.
   */
  readonly allowedHosts: readonly string[];
  /** Refuse endpoint URLs that are not https (default off; on in production is advised). */
  readonly httpsOnly: boolean;
  /** How often workers look for due deliveries besides the LISTEN wake-up. */
  readonly pollIntervalMs: number;
  /** Messages and attempts are kept this long (recovery reaches back at most 14 days). */
  readonly retentionMs: number;
}

/** The row-change fan-out (change log → messages and deliveries). */
export interface FanoutSettings {
  /** Changes read per transaction. */
  readonly batchSize: number;
  /** Look for changes at least this often besides the wake-ups. */
  readonly pollIntervalMs: number;
  /** How often the wake-up feed looks for ended transactions (0: NOTIFY and polling only). */
  readonly probeIntervalMs: number;
}

/** Everything the webhooks service reads from its environment, validated and frozen at startup. */
export interface WebhooksConfig extends GrpcServiceSettings {
  readonly inbound: InboundSettings;
  readonly consumers: ConsumerSettings;
  readonly outbound: OutboundSettings;
  readonly fanout: FanoutSettings;
}

/** Svix's schedule: immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h. */
export const DEFAULT_RETRY_SCHEDULE_SECONDS = [5, 300, 1800, 7200, 18000, 36000, 36000] as const;

const HOUR_MS = 3_600_000;

/**
 * Reads the webhooks service's configuration (documented in the README, "Configuration").
 *
 * @throws ConfigError listing every problem.
 */
export function loadWebhooksConfig(env: Env): WebhooksConfig {
  const r = new EnvReader(env);
  const base = readGrpcServiceSettings(r, { variable: 'WEBHOOKS_GRPC_ADDRESS', fallback: '127.0.0.1:50053' });
  const httpAddress = r.string('WEBHOOKS_HTTP_ADDRESS', '127.0.0.1:8080');
  if (!/^(\[[^\]]+\]|[^:]*):\d{1,5}$/.test(httpAddress))
    r.problem(`WEBHOOKS_HTTP_ADDRESS must be host:port, got "${httpAddress}"`);
  const schedule = r.list('WEBHOOKS_RETRY_SCHEDULE', DEFAULT_RETRY_SCHEDULE_SECONDS.map(String));
  const retryScheduleMs = schedule.map((s) => Number(s) * 1000);
  if (retryScheduleMs.some((ms) => !Number.isFinite(ms) || ms < 0))
    r.problem(`WEBHOOKS_RETRY_SCHEDULE must be seconds separated by commas, got "${schedule.join(',')}"`);
  const concurrency = r.int('WEBHOOKS_DELIVERY_CONCURRENCY', 256, { min: 1, max: 10_000 });
  const maxSourceBodyBytes = Math.floor((base.maxMessageBytes - 64 * 1024) / 2);
  const maxBodyBytes = r.int('WEBHOOKS_MAX_BODY_BYTES', Math.min(1024 * 1024, maxSourceBodyBytes), {
    min: 1024,
  });
  if (maxBodyBytes > maxSourceBodyBytes)
    r.problem(
      `WEBHOOKS_MAX_BODY_BYTES (${maxBodyBytes}) must not exceed (MAX_MESSAGE_BYTES − 64 KiB) / 2 = ${maxSourceBodyBytes}, so that a consumed event fits one gRPC message; raise MAX_MESSAGE_BYTES (and the consumers' receive limit) first`,
    );
  const config: WebhooksConfig = {
    ...base,
    inbound: {
      httpAddress,
      maxBodyBytes,
      maxSourceBodyBytes,
      toleranceSeconds: r.int('WEBHOOKS_TOLERANCE_SECONDS', 300, { min: 1, max: 86_400 }),
      ratePerSecond: r.int('WEBHOOKS_SOURCE_RATE_PER_SECOND', 1000, { min: 1 }),
      retentionMs: r.int('WEBHOOKS_INBOX_RETENTION_HOURS', 168, { min: 1 }) * HOUR_MS,
      retentionIntervalMs: r.int('WEBHOOKS_RETENTION_INTERVAL_MS', 60_000, { min: 100 }),
      retryAfterSeconds: r.int('WEBHOOKS_RETRY_AFTER_SECONDS', 5, { min: 1, max: 3600 }),
    },
    consumers: {
      defaultAckTimeoutSeconds: r.int('WEBHOOKS_ACK_TIMEOUT_SECONDS', 30, { min: 1, max: 3600 }),
      defaultMaxInFlight: r.int('WEBHOOKS_CONSUMER_MAX_IN_FLIGHT', 100, { min: 1, max: 1000 }),
      heartbeatMs: r.int('WEBHOOKS_HEARTBEAT_MS', 10_000, { min: 100 }),
      pollIntervalMs: r.int('WEBHOOKS_CONSUMER_POLL_INTERVAL_MS', 1000, { min: 10 }),
      streamsPerIdentity: r.int('WEBHOOKS_MAX_CONSUME_STREAMS_PER_IDENTITY', 32, { min: 1 }),
      streams: r.int('WEBHOOKS_MAX_CONSUME_STREAMS', 1000, { min: 1 }),
    },
    outbound: {
      retryScheduleMs,
      retryJitter: r.int('WEBHOOKS_RETRY_JITTER_PERCENT', 20, { min: 0, max: 50 }) / 100,
      minRetryAfterTimeoutMs: r.int('WEBHOOKS_MIN_RETRY_AFTER_TIMEOUT_MS', 60_000, { min: 0 }),
      maxRetryAfterMs: r.int('WEBHOOKS_MAX_RETRY_AFTER_MS', 10 * HOUR_MS, { min: 0 }),
      requestTimeoutMs: r.int('WEBHOOKS_REQUEST_TIMEOUT_MS', 15_000, { min: 100, max: 300_000 }),
      disableAfterFailingMs: r.int('WEBHOOKS_DISABLE_AFTER_FAILING_HOURS', 120, { min: 1 }) * HOUR_MS,
      concurrency,
      concurrencyPerEndpoint: r.int('WEBHOOKS_ENDPOINT_CONCURRENCY', Math.min(16, concurrency), {
        min: 1,
        max: concurrency,
      }),
      breakerFailures: r.int('WEBHOOKS_BREAKER_FAILURES', 5, { min: 1 }),
      breakerResetMs: r.int('WEBHOOKS_BREAKER_RESET_MS', 30_000, { min: 10 }),
      allowedHosts: r.list('WEBHOOKS_ALLOWED_HOSTS', []),
      httpsOnly: r.bool('WEBHOOKS_HTTPS_ONLY', false),
      pollIntervalMs: r.int('WEBHOOKS_POLL_INTERVAL_MS', 1000, { min: 10 }),
      retentionMs: r.int('WEBHOOKS_MESSAGE_RETENTION_DAYS', 30, { min: 15 }) * 24 * HOUR_MS,
    },
    fanout: {
      batchSize: r.int('WEBHOOKS_FANOUT_BATCH_SIZE', 500, { min: 1, max: 10_000 }),
      pollIntervalMs: r.int('WEBHOOKS_FANOUT_POLL_INTERVAL_MS', 1000, { min: 10 }),
      probeIntervalMs: r.int('WEBHOOKS_FANOUT_PROBE_INTERVAL_MS', 20, { min: 0, max: 60_000 }),
    },
  };
  r.done();
  return deepFreeze(config);
}
