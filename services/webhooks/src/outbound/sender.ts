import { Agent, type Dispatcher, request } from 'undici';
import { parseRetryAfter } from './retry-schedule';
import { BlockedAddressError, type SsrfGuard } from './ssrf-guard';

/** How an attempt ended (sluice_webhooks.attempts.outcome). */
export type AttemptOutcome = 'succeeded' | 'http_error' | 'timeout' | 'network_error' | 'blocked';

export interface AttemptResult {
  readonly outcome: AttemptOutcome;
  /** The HTTP status, when a response came. */
  readonly statusCode?: number;
  readonly durationMs: number;
  /** What went wrong, for the attempt record (never sent anywhere). */
  readonly error?: string;
  /** The first RESPONSE_BODY_LIMIT bytes of the response, as text. */
  readonly responseBody?: string;
  /** The response's Retry-After, in ms from when it came. */
  readonly retryAfterMs?: number;
}

export interface OutboundRequest {
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/** At most this much of a response is read and recorded; the rest is never read. */
export const RESPONSE_BODY_LIMIT = 20 * 1024;

/** Thrown by send() when `signal` (the worker closing) aborted the attempt: nothing to record. */
export class AttemptAbandoned extends Error {
  constructor() {
    super('attempt abandoned: the worker is closing');
    this.name = 'AttemptAbandoned';
  }
}

/**
 * Sends webhook requests through one undici Agent whose connections pass the SSRF guard.
 * Redirects are never followed (undici's request() does not; a 3xx is a failed attempt), the
 * whole attempt — connect, headers, the part of the body read — is bounded by `timeoutMs`, and
 * only the first RESPONSE_BODY_LIMIT bytes of a response are read before the body is destroyed.
 */
export class WebhookSender {
  readonly #guard: SsrfGuard;
  readonly #timeoutMs: number;
  readonly #agent: Agent;

  constructor(guard: SsrfGuard, timeoutMs: number) {
    this.#guard = guard;
    this.#timeoutMs = timeoutMs;
    this.#agent = new Agent({
      connect: guard.connector(timeoutMs),
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      // Endpoints are many and mostly idle between bursts; keep sockets a little while.
      keepAliveTimeout: 10_000,
    });
  }

  /**
   * One attempt. Never throws for what the endpoint or network does (that is the result);
   * throws AttemptAbandoned when `signal` aborted it.
   */
  async send(req: OutboundRequest, signal?: AbortSignal): Promise<AttemptResult> {
    const started = performance.now();
    const elapsed = () => Math.round(performance.now() - started);
    let url: URL;
    try {
      url = new URL(req.url);
      this.#guard.checkUrl(url);
    } catch (error) {
      const blocked = error instanceof BlockedAddressError;
      return {
        outcome: blocked ? 'blocked' : 'network_error',
        durationMs: elapsed(),
        error: blocked ? error.message : `invalid URL: ${req.url}`,
      };
    }
    let headers = req.headers;
    if (url.username || url.password) {
      // Credentials in the URL (https://user:pass@host/…) become HTTP Basic authentication, as
      // Svix does; undici would drop them. An Authorization among the custom headers wins.
      const credentials = `${decodeUserinfo(url.username)}:${decodeUserinfo(url.password)}`;
      if (!Object.keys(headers).some((h) => h.toLowerCase() === 'authorization'))
        headers = { ...headers, authorization: `Basic ${Buffer.from(credentials).toString('base64')}` };
      url.username = '';
      url.password = '';
    }
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    const combined = signal ? AbortSignal.any([timeout, signal]) : timeout;
    let response: Dispatcher.ResponseData;
    try {
      response = await request(url, {
        method: 'POST',
        dispatcher: this.#agent,
        headers,
        body: req.body,
        signal: combined,
      });
    } catch (error) {
      if (signal?.aborted) throw new AttemptAbandoned();
      return { ...classifyError(error, timeout.aborted), durationMs: elapsed() };
    }
    const statusCode = response.statusCode;
    const { text, error: bodyError } = await readHead(response.body);
    if (signal?.aborted) throw new AttemptAbandoned();
    const durationMs = elapsed();
    const responseBody = text;
    if (statusCode >= 200 && statusCode < 300) {
      // The endpoint said yes; a body that then stalls does not change that.
      return { outcome: 'succeeded', statusCode, durationMs, responseBody };
    }
    const retryAfter = response.headers['retry-after'];
    const retryAfterMs = parseRetryAfter(Array.isArray(retryAfter) ? retryAfter[0] : retryAfter);
    let error = `HTTP ${statusCode}`;
    if (statusCode >= 300 && statusCode < 400) {
      const location = response.headers.location;
      error += ` (redirect to ${String(location ?? '?')} not followed)`;
    }
    if (bodyError && timeout.aborted) error += '; the response body timed out';
    return {
      outcome: 'http_error',
      statusCode,
      durationMs,
      error,
      responseBody,
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    };
  }

  async close(): Promise<void> {
    await this.#agent.destroy().catch(() => {});
  }
}

/**
 * A URL's username or password as sent: percent-decoded, a malformed escape ("%ZZ", which the
 * URL parser keeps) as written. decodeURIComponent would throw, out of send(): the delivery then
 * came back with each lease, for ever, with no attempt recorded.
 */
function decodeUserinfo(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

/** The first RESPONSE_BODY_LIMIT bytes of a body as text (NULs dropped: PostgreSQL text has none); then it is destroyed. */
async function readHead(body: Dispatcher.ResponseData['body']): Promise<{ text: string; error?: unknown }> {
  const chunks: Buffer[] = [];
  let size = 0;
  let error: unknown;
  try {
    for await (const chunk of body) {
      const buf = chunk as Buffer;
      chunks.push(buf);
      size += buf.length;
      if (size >= RESPONSE_BODY_LIMIT) break;
    }
  } catch (err) {
    error = err;
  } finally {
    body.destroy();
  }
  const bytes = Buffer.concat(chunks).subarray(0, RESPONSE_BODY_LIMIT);
  return { text: new TextDecoder().decode(bytes).replaceAll('\u0000', ''), error };
}

function classifyError(error: unknown, timedOut: boolean): Omit<AttemptResult, 'durationMs'> {
  const cause = findBlocked(error);
  if (cause) return { outcome: 'blocked', error: cause.message };
  const code = (error as { code?: unknown })?.code;
  if (
    timedOut ||
    code === 'UND_ERR_CONNECT_TIMEOUT' ||
    code === 'UND_ERR_HEADERS_TIMEOUT' ||
    code === 'UND_ERR_BODY_TIMEOUT'
  )
    return { outcome: 'timeout', error: 'the request timed out' };
  const message = error instanceof Error ? error.message : String(error);
  const detail = typeof code === 'string' ? `${code}: ${message}` : message;
  return { outcome: 'network_error', error: detail };
}

/** The BlockedAddressError in an error or its causes (undici may wrap the connector's error). */
function findBlocked(error: unknown): BlockedAddressError | undefined {
  for (let e = error, depth = 0; e && depth < 5; depth++) {
    if (e instanceof BlockedAddressError) return e;
    if ((e as { code?: unknown }).code === 'ERR_WEBHOOK_ADDRESS_BLOCKED') return e as BlockedAddressError;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}
