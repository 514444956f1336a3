import { hostname } from 'node:os';
import pino, { type DestinationStream, type Logger } from 'pino';
import type { LokiSettings } from './log-settings';
import { LokiShipper, type WarningSink } from './loki-shipper';

export interface LoggerConfig {
  readonly service: string;
  readonly level: string;
  /** Deployment environment label (e.g. "local", "production"). */
  readonly env: string;
  /** Ship lines to Loki as well (from `readLogSettings`); absent: stdout only. */
  readonly loki?: LokiSettings | undefined;
  /** Where the JSON lines go; stdout unless a test reads them. */
  readonly stdout?: DestinationStream | undefined;
  /** Where Loki shipping warnings go; stderr unless a test reads them. */
  readonly stderr?: WarningSink | undefined;
}

/** Keys whose values never reach a log line: secrets. */
const SECRET_KEYS = [
  'authorization',
  'cookie',
  'token',
  'accessToken',
  'access_token',
  'refreshToken',
  'refresh_token',
  'apiKey',
  'api_key',
  'password',
  'secret',
  'jwtSecret',
  'serviceKey',
  'databaseUrl',
  'connectionString',
  'DATABASE_URL',
  'JWT_SECRET',
  'LOKI_PASSWORD',
];
/** Keys that hold user data: rows, values sent to the database, request and webhook bodies. */
const DATA_KEYS = ['values', 'row', 'rows', 'body', 'payload', 'params', 'parameters'];

/**
 * Top-level keys plus the nested places these turn up. No `*.key` wildcards: pino's redaction
 * then walks every object of every line and made a log call ~15 times slower (measured).
 */
const REDACT_PATHS = [
  ...SECRET_KEYS,
  ...DATA_KEYS,
  ...['headers', 'metadata'].flatMap((o) => [`${o}.authorization`, `${o}.cookie`]),
  ...['config', 'settings'].flatMap((o) => [
    `${o}.databaseUrl`,
    `${o}.jwtSecret`,
    `${o}.password`,
    `${o}.loki`,
  ]),
  ...['request', 'req'].flatMap((o) => DATA_KEYS.map((key) => `${o}.${key}`)),
  'loki.basicAuth',
  // node-postgres errors: `detail` repeats the values of a violated key ("Key (email)=(…)").
  'err.detail',
  'err.cause.detail',
];

let processStdout: DestinationStream | undefined;
/** One shipper per Loki configuration in the process: services in one process share its buffer and connection. */
const shippers = new Map<string, LokiShipper>();

/**
 * Makes a root pino logger — the one place loggers are made. Every line is one JSON object on
 * stdout: `{"level":"info","time":1764230000000,"service":"data","env":"production","hostname":…,…,"msg":…}`
 * — the level by name, `time` in milliseconds since the epoch (pino's default, cheaper than
 * ISO text, and what Loki's timestamps are made from). Values under secret or data keys
 * (authorization, token, password, databaseUrl, values, rows, body, …, at the top of the log
 * object or in `headers`, `config`, `request`, and pg's error `detail`) are written as
 * "[redacted]".
 *
 * With `loki`, the same lines are shipped to Loki under the labels app="sluice", service, env
 * and level, and nothing else: request id, trace id, method, tenant and user stay in the line
 * (query them with `| json`). Shipping never makes a log call wait or fail (see LokiShipper);
 * loggers of several services in one process with the same Loki settings share one buffer
 * and connection, on the main thread (no worker thread). Call `flushLogs` before exiting.
 *
 * Handlers get child loggers with request fields (see @sluice/grpc), never build log strings.
 */
export function createLogger(config: LoggerConfig): Logger {
  processStdout ??= pino.destination({ dest: 1, sync: false });
  const stdout = config.stdout ?? processStdout;
  const options: pino.LoggerOptions = {
    level: config.level,
    // hostname: which machine wrote the line (on Fly, the machine id); a field, not a label.
    base: { service: config.service, env: config.env, hostname: hostname() },
    timestamp: pino.stdTimeFunctions.epochTime,
    formatters: { level: (label) => ({ level: label }) },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
  };
  if (!config.loki) return pino(options, stdout);
  const key = JSON.stringify(config.loki);
  let shipper = shippers.get(key);
  if (!shipper) {
    shipper = new LokiShipper(config.loki, config.stderr);
    shippers.set(key, shipper);
  }
  const loki = shipper.destination({ app: 'sluice', service: config.service, env: config.env });
  // Both at the lowest level: the logger's own level (and a child's) decides what is written.
  return pino(
    options,
    pino.multistream([
      { level: 'trace', stream: stdout },
      { level: 'trace', stream: loki },
    ]),
  );
}

/**
 * Sends the lines buffered for Loki, waiting at most `timeoutMs` (what is still unsent then is
 * dropped and counted); the process's shutdown calls it last. Resolves, never rejects; keeps
 * the process alive while it runs. Loggers stay usable afterwards. Lines on stdout need no
 * flush (pino writes out what is pending when the process exits).
 */
export async function flushLogs(timeoutMs = 2000): Promise<void> {
  await Promise.all([...shippers.values()].map((shipper) => shipper.flush(timeoutMs)));
}
