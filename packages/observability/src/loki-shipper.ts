import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { debuglog, promisify } from 'node:util';
import { gzip } from 'node:zlib';
import pino from 'pino';
import { Counter } from 'prom-client';
import type { LokiSettings } from './log-settings';
import { metrics } from './metrics';

/**
 * Log lines that will never reach Loki, by reason: `buffer_full` (Loki slow or down for longer
 * than the buffer lasts: the oldest lines go), `rejected` (Loki answered 4xx to a push, e.g. a
 * bad timestamp or line too long) and `shutdown` (still unsent when `flushLogs` gave up).
 * The same lines are on stdout regardless.
 */
export const logLinesDropped = new Counter({
  name: 'log_lines_dropped_total',
  help: 'Log lines never delivered to Loki (the same lines went to stdout).',
  labelNames: ['reason'] as const,
  registers: [metrics],
});

/** The Loki labels of a line: static, low-cardinality values only (never request data). */
export interface StreamLabels {
  readonly app: string;
  readonly service: string;
  readonly env: string;
  readonly level: string;
}

/** Where the shipper's own warnings go (stderr by default: never to Loki, which may be the problem). */
export interface WarningSink {
  write(text: string): unknown;
}

interface LabelSet {
  readonly key: string;
  readonly labels: StreamLabels;
}

interface Entry {
  readonly labels: LabelSet;
  /** Nanoseconds since the epoch, as Loki's push API wants them: a decimal string. */
  readonly ts: string;
  readonly line: string;
}

const gzipAsync = promisify(gzip);

/** NODE_DEBUG=sluice-loki: one line per push (size, time, outcome). */
const debug = debuglog('sluice-loki');

/** What became of a push: sent, rejected for good (4xx), or failed and worth retrying. */
type Outcome = 'sent' | 'rejected' | { readonly failed: string };

/** pino's numeric levels as the names stdout shows, so `{level="warn"}` matches `"level":"warn"`. */
const LEVEL_NAMES: Readonly<Record<number, string>> = {
  10: 'trace',
  20: 'debug',
  30: 'info',
  40: 'warn',
  50: 'error',
  60: 'fatal',
};

/** One push carries at most this many lines / characters (Loki's default limit is 4 MB a push). */
const BATCH_LINES = 1000;
const BATCH_CHARS = 1024 * 1024;
/** The buffer's bound in characters, next to LOKI_MAX_BUFFERED_LINES: a few huge lines cannot grow it. */
const MAX_BUFFERED_CHARS = 16 * 1024 * 1024;
const MAX_RETRY_DELAY_MS = 30_000;
/** At most one warning on stderr per this interval; the next one says how many were held back. */
const WARNING_INTERVAL_MS = 30_000;

/**
 * Ships pino lines to Loki's push API (JSON body) from the process's main thread, without ever
 * making a log call wait: a line is appended to a bounded in-memory buffer and the call returns.
 * One push is in flight at a time (a slow Loki cannot pile up requests); lines are sent every
 * `batchIntervalMs`, or at once when a full batch is waiting. A push that fails (connection
 * refused, timeout, 429, 5xx) is retried with exponential backoff and jitter while new lines
 * queue behind it; when the buffer is full the oldest lines are dropped. Every dropped line
 * is counted in `log_lines_dropped_total`, and a warning goes to stderr at most every 30 s.
 * Timers and sockets are unref'd: shipping never keeps the process alive; `flush` is how a
 * process sends what is buffered before it exits.
 *
 * Why not pino-loki (read at 3.0.0): its buffer drops the oldest lines silently and a failed
 * push only prints to the console, so nothing could count drops; it starts a new push every
 * interval whether or not the previous one returned (a slow Loki accumulates up to
 * timeout/interval requests); it does not retry; and as a pino transport it runs a worker thread
 * per logger. Its wire format (one JSON push, nanosecond string timestamps) is the same, here
 * gzip-encoded unless LOKI_GZIP=false.
 */
export class LokiShipper {
  readonly #settings: LokiSettings;
  readonly #warnings: WarningSink;
  readonly #url: URL;
  readonly #headers: Record<string, string>;
  readonly #agent: HttpAgent;
  #queue: Entry[] = [];
  #queuedChars = 0;
  #timer: NodeJS.Timeout | undefined;
  #timerDue = 0;
  #inFlight: Promise<void> | undefined;
  #abortInFlight: (() => void) | undefined;
  #failures = 0;
  #flushing = false;
  #lastMs = 0;
  #sameMs = 0;
  #lastWarning = 0;
  #heldWarnings = 0;
  #dropped = 0;

  constructor(settings: LokiSettings, warnings: WarningSink = process.stderr) {
    this.#settings = settings;
    this.#warnings = warnings;
    this.#url = new URL(settings.pushUrl);
    this.#headers = { 'content-type': 'application/json' };
    if (settings.basicAuth) {
      const { username, password } = settings.basicAuth;
      this.#headers.authorization = `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
    }
    if (settings.tenantId) this.#headers['x-scope-orgid'] = settings.tenantId;
    const https = this.#url.protocol === 'https:';
    this.#agent = https
      ? new HttpsAgent({ keepAlive: true, maxSockets: 1 })
      : new HttpAgent({ keepAlive: true, maxSockets: 1 });
  }

  /**
   * A pino destination stream for one logger: each line is buffered for Loki under the static
   * labels app, service, env and the line's level. pino tells it the level and time of each
   * line (`pino.metadata`), so nothing is parsed.
   */
  destination(labels: Omit<StreamLabels, 'level'>): LokiDestination {
    return new LokiDestination(this, labels);
  }

  /** Buffers one line (pino's JSON with its trailing newline) taken at `timeMs`. */
  enqueue(labels: LabelSet, timeMs: number, line: string): void {
    // Loki keeps the order of lines with equal timestamps only by chance: lines within one
    // millisecond get increasing nanoseconds, in the order they were logged.
    if (timeMs === this.#lastMs) this.#sameMs = Math.min(this.#sameMs + 1, 999_999);
    else {
      this.#lastMs = timeMs;
      this.#sameMs = 0;
    }
    const ts = `${timeMs}${String(this.#sameMs).padStart(6, '0')}`;
    const text = line.endsWith('\n') ? line.slice(0, -1) : line;
    this.#queue.push({ labels, ts, line: text });
    this.#queuedChars += text.length;
    this.#trim();
    if (this.#flushing) return;
    if (this.#queue.length >= BATCH_LINES && this.#failures === 0) this.#schedule(0);
    else this.#schedule(this.#settings.batchIntervalMs);
  }

  /**
   * Sends the buffered lines, waiting at most `timeoutMs`; lines still unsent then are dropped
   * (counted, reason `shutdown`). Resolves, never rejects. Holds the process open while it runs.
   */
  async flush(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let keepAlive: NodeJS.Timeout | undefined;
    const expired = new Promise<void>((resolve) => {
      keepAlive = setTimeout(resolve, Math.max(0, timeoutMs));
    });
    this.#flushing = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    try {
      while ((this.#queue.length > 0 || this.#inFlight) && Date.now() < deadline) {
        const failures = this.#failures;
        if (!this.#inFlight) this.#send(Math.min(this.#settings.timeoutMs, deadline - Date.now()));
        await Promise.race([this.#inFlight, expired]);
        if (this.#failures > failures) await Promise.race([pause(100), expired]);
      }
      if (this.#inFlight) {
        this.#abortInFlight?.();
        await this.#inFlight;
      }
      if (this.#queue.length > 0) {
        const lost = this.#queue.length;
        this.#queue = [];
        this.#queuedChars = 0;
        this.#drop('shutdown', lost);
        this.#warn(
          `Loki: ${lost} log lines still unsent after ${timeoutMs} ms at shutdown were dropped`,
          true,
        );
      }
    } finally {
      clearTimeout(keepAlive);
      this.#flushing = false;
    }
  }

  /** Drops the oldest lines while the buffer is over either bound (a tenth at a time). */
  #trim(): void {
    const maxLines = this.#settings.maxBufferedLines;
    if (this.#queue.length <= maxLines && this.#queuedChars <= MAX_BUFFERED_CHARS) return;
    let n = 0;
    let chars = 0;
    const excess = Math.max(this.#queue.length - maxLines, 0);
    const target = Math.max(excess, Math.ceil(maxLines / 10));
    while (n < this.#queue.length && (n < target || this.#queuedChars - chars > MAX_BUFFERED_CHARS)) {
      chars += this.#queue[n]!.line.length;
      n++;
    }
    this.#queue.splice(0, n);
    this.#queuedChars -= chars;
    this.#drop('buffer_full', n);
    this.#warn(
      `Loki is slow or unreachable: dropped the ${n} oldest buffered log lines (${this.#dropped} so far)`,
    );
  }

  /** Arms the send timer, unless a push is running or the timer already fires as soon. */
  #schedule(delayMs: number): void {
    if (this.#inFlight) return;
    const due = Date.now() + delayMs;
    if (this.#timer) {
      // Never push a pending send further out: re-arming on every line would starve it.
      if (this.#timerDue <= due) return;
      clearTimeout(this.#timer);
    }
    this.#timerDue = due;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#send(this.#settings.timeoutMs);
    }, delayMs);
    this.#timer.unref();
  }

  /** Takes one batch off the buffer and pushes it; `#inFlight` settles when that is decided. */
  #send(timeoutMs: number): void {
    if (this.#inFlight || this.#queue.length === 0) return;
    let n = 0;
    let chars = 0;
    while (n < this.#queue.length && n < BATCH_LINES && (n === 0 || chars < BATCH_CHARS)) {
      chars += this.#queue[n]!.line.length;
      n++;
    }
    const batch = this.#queue.splice(0, n);
    this.#queuedChars -= chars;
    const controller = new AbortController();
    this.#abortInFlight = () => controller.abort();
    const started = performance.now();
    this.#inFlight = this.#push(batch, timeoutMs, controller.signal).then((outcome) => {
      debug(
        'push of %d lines: %s in %d ms (%d buffered)',
        n,
        typeof outcome === 'string' ? outcome : outcome.failed,
        Math.round(performance.now() - started),
        this.#queue.length,
      );
      this.#inFlight = undefined;
      this.#abortInFlight = undefined;
      this.#settle(batch, chars, outcome);
    });
  }

  #settle(batch: Entry[], chars: number, outcome: Outcome): void {
    if (outcome === 'sent') {
      if (this.#failures > 0)
        this.#warn(`Loki: pushing works again after ${this.#failures} failed attempts`, true);
      this.#failures = 0;
    } else if (outcome === 'rejected') {
      this.#drop('rejected', batch.length);
    } else {
      // Retry: the batch goes back to the front, where the buffer's bound may drop it first.
      this.#failures++;
      this.#queue.unshift(...batch);
      this.#queuedChars += chars;
      this.#trim();
      this.#warn(`Loki push failed (${outcome.failed}); retrying with backoff`);
    }
    if (this.#flushing || this.#queue.length === 0) return;
    if (this.#failures > 0) {
      const backoff = Math.min(this.#settings.batchIntervalMs * 2 ** this.#failures, MAX_RETRY_DELAY_MS);
      this.#schedule(backoff / 2 + Math.random() * (backoff / 2));
    } else {
      this.#schedule(this.#queue.length >= BATCH_LINES ? 0 : this.#settings.batchIntervalMs);
    }
  }

  /** One POST of `batch`, grouped into streams by label set. Never rejects. */
  async #push(batch: readonly Entry[], timeoutMs: number, signal: AbortSignal): Promise<Outcome> {
    const streams = new Map<string, { stream: StreamLabels; values: [string, string][] }>();
    for (const entry of batch) {
      let stream = streams.get(entry.labels.key);
      if (!stream) {
        stream = { stream: entry.labels.labels, values: [] };
        streams.set(entry.labels.key, stream);
      }
      stream.values.push([entry.ts, entry.line]);
    }
    const json = JSON.stringify({ streams: [...streams.values()] });
    try {
      // zlib's async gzip runs on libuv's thread pool, not the event loop; level 1 is fast and
      // still shrinks JSON lines several times.
      const body = this.#settings.gzip ? await gzipAsync(json, { level: 1 }) : Buffer.from(json);
      const { status, text } = await this.#post(body, timeoutMs, signal);
      if (status >= 200 && status < 300) return 'sent';
      if (status === 429 || status >= 500) return { failed: `HTTP ${status}: ${text}` };
      this.#warn(`Loki rejected a push of ${batch.length} lines (HTTP ${status}: ${text}); they are dropped`);
      return 'rejected';
    } catch (error) {
      return { failed: describe(error) };
    }
  }

  #post(body: Buffer, timeoutMs: number, signal: AbortSignal): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const send = this.#url.protocol === 'https:' ? httpsRequest : httpRequest;
      const req = send(this.#url, {
        method: 'POST',
        agent: this.#agent,
        headers: {
          ...this.#headers,
          ...(this.#settings.gzip ? { 'content-encoding': 'gzip' } : {}),
          'content-length': body.length,
        },
        signal,
      });
      const timer = setTimeout(() => req.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      timer.unref();
      // An unanswered push must not keep the process alive (flush holds it open on purpose).
      req.on('socket', (socket) => socket.unref());
      req.on('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      req.on('response', (res: IncomingMessage) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          if (text.length < 300) text += chunk;
        });
        res.on('end', () => {
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, text: text.trim().slice(0, 300) });
        });
        res.on('error', (error) => {
          clearTimeout(timer);
          reject(error);
        });
        // Aborted or timed out mid-answer: settle even if no 'error' comes (a settled promise ignores it).
        res.on('close', () => {
          clearTimeout(timer);
          if (!res.complete) reject(new Error('the answer was cut off'));
        });
      });
      req.end(body);
    });
  }

  #drop(reason: 'buffer_full' | 'rejected' | 'shutdown', lines: number): void {
    if (lines === 0) return;
    this.#dropped += lines;
    logLinesDropped.inc({ reason }, lines);
  }

  /** A JSON line on stderr, at most one per WARNING_INTERVAL_MS unless `always`. */
  #warn(message: string, always = false): void {
    const now = Date.now();
    if (!always && now - this.#lastWarning < WARNING_INTERVAL_MS) {
      this.#heldWarnings++;
      return;
    }
    this.#lastWarning = now;
    const held = this.#heldWarnings;
    this.#heldWarnings = 0;
    const line = {
      level: 'warn',
      time: now,
      app: 'sluice',
      component: 'loki-shipper',
      loki: this.#url.host,
      log_lines_dropped: this.#dropped,
      ...(held > 0 ? { warnings_held_back: held } : {}),
      msg: message,
    };
    this.#warnings.write(`${JSON.stringify(line)}\n`);
  }
}

/** The pino destination `LokiShipper.destination` returns. */
export class LokiDestination {
  /** Asks pino to set `lastLevel` and `lastTime` before each write. */
  readonly [pino.symbols.needsMetadataGsym] = true;
  lastLevel = 30;
  lastTime = '';
  readonly #shipper: LokiShipper;
  readonly #labels: Omit<StreamLabels, 'level'>;
  readonly #byLevel = new Map<number, LabelSet>();

  constructor(shipper: LokiShipper, labels: Omit<StreamLabels, 'level'>) {
    this.#shipper = shipper;
    this.#labels = labels;
  }

  write(line: string): void {
    const time = Number(this.lastTime);
    this.#shipper.enqueue(
      this.#labelSet(this.lastLevel),
      Number.isSafeInteger(time) ? time : Date.now(),
      line,
    );
  }

  #labelSet(level: number): LabelSet {
    let set = this.#byLevel.get(level);
    if (!set) {
      const labels: StreamLabels = { ...this.#labels, level: LEVEL_NAMES[level] ?? 'info' };
      set = { key: JSON.stringify(labels), labels };
      this.#byLevel.set(level, set);
    }
    return set;
  }
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? `${code}: ${error.message}` : error.message;
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
