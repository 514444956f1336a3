import { type Link, ROOT_CONTEXT, type Span, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { ReconnectingSession } from '@sluice/db';
import { formatTraceparent, parseTraceparent, tracerFor } from '@sluice/observability';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { OutboundSettings } from '../config';
import { messageId } from '../ids';
import {
  type ClaimedDelivery,
  claimDeliveries,
  MAX_CLAIM_BYTES,
  type Settled,
  type SucceededAttempt,
  settleFailure,
  settleSuccesses,
} from './delivery-store';
import { EndpointBreakers } from './endpoint-breakers';
import {
  deliveriesInFlight,
  deliveriesTotal,
  deliveryLagSeconds,
  deliverySeconds,
  registerBreakers,
} from './metrics';
import { announceOperationalEvents } from './operational';
import { retryDelayMs } from './retry-schedule';
import { AttemptAbandoned, type AttemptResult, WebhookSender } from './sender';
import { signatureHeader } from './signing';
import { SsrfGuard } from './ssrf-guard';

export interface DeliveryWorkerDeps {
  readonly pool: pg.Pool;
  readonly logger: Logger;
  readonly settings: OutboundSettings;
  /** A direct (session) connection string for LISTEN sluice_webhooks. */
  readonly listenConnectionString: string;
}

export interface DeliveryWorker {
  close(): Promise<void>;
}

const CHANNEL = 'sluice_webhooks';
/** Most deliveries claimed by one statement (claims run one at a time: fewer, larger ones keep up with bursts). */
const CLAIM_BATCH = 256;
/**
 * A claim holds for the request timeout plus this: time to settle the attempt afterwards. Only
 * after it may another worker take the delivery again, so it is generous (a redelivery then is
 * a duplicate the receiver dedupes by webhook-id, but still one to avoid).
 */
const LEASE_MARGIN_MS = 10_000;
/** After a failed claim (database away), wait at least this before the next. */
const CLAIM_ERROR_DELAY_MS = 1_000;
/** Most successes settled by one statement, and statements settling at once. */
const SETTLE_BATCH = 256;
const SETTLE_PARALLEL = 2;
/** A delivery failing this attempt reports its endpoint failing (Svix: after the 4th). */
const FAILING_EVENT_AFTER_ATTEMPTS = 4;
const USER_AGENT = 'Sluice-Webhooks';

// Request headers an endpoint's custom headers may not set: ours (signature, content type,
// trace), and those undici or HTTP itself own.
const RESERVED_HEADERS = new Set([
  'content-type',
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'upgrade',
  'expect',
  'host',
  'te',
  'trailer',
  'user-agent',
  'traceparent',
  'tracestate',
]);

/**
 * Starts the outbound delivery worker of this instance (issue 9, Outbound): it claims due
 * deliveries under a lease (delivery-store.ts), sends each as a signed Standard Webhooks request
 * through the SSRF guard (sender.ts, ssrf-guard.ts, signing.ts), and settles the attempt —
 * recorded; succeeded, retried on the schedule (retry-schedule.ts) or failed; the endpoint
 * failing, disabled or recovered, with operational events (operational.ts).
 *
 * It wakes on NOTIFY sluice_webhooks (a delivery became due), every pollIntervalMs (retries
 * coming due, leases ending, breakers to probe), and after a completion while more is due than
 * it could take. At most `concurrency` attempts are in flight and `concurrencyPerEndpoint` per
 * endpoint (an endpoint at its cap is left out of claims, so a slow one never holds up the
 * others); an endpoint whose breaker is open is left out too (endpoint-breakers.ts).
 *
 * Deliveries of a disabled endpoint (410 Gone, failing too long, or disabled by its admin) stay
 * pending and are not claimed; enabled again, it receives them (nothing is lost, and the
 * publish trigger queues nothing new for it meanwhile). A blocked URL (SSRF guard) fails its
 * delivery at once: retrying cannot help.
 *
 * Resolves once the LISTEN session is up.
 * @throws when the database cannot be reached.
 */
export async function startDeliveryWorker(deps: DeliveryWorkerDeps): Promise<DeliveryWorker> {
  const worker = new Worker(deps);
  await worker.start();
  return worker;
}

class Worker implements DeliveryWorker {
  readonly #deps: DeliveryWorkerDeps;
  readonly #settings: OutboundSettings;
  readonly #logger: Logger;
  readonly #sender: WebhookSender;
  readonly #breakers: EndpointBreakers;
  #unregisterBreakers: (() => void) | undefined;
  /** Attempts in flight, by delivery id. */
  readonly #inFlight = new Map<string, Promise<void>>();
  readonly #perEndpoint = new Map<string, number>();
  /** Aborts attempts still in flight when close() stops waiting for them. */
  readonly #abandon = new AbortController();
  #listen: ReconnectingSession | undefined;
  #loop: Promise<void> | undefined;
  #closed = false;
  #wakePending = false;
  #wakeUp: (() => void) | undefined;
  /** The last claim was cut short by capacity: more may be due. */
  #moreDue = false;
  /**
   * Endpoints that took all a claim let them: more of theirs may be due, so one of their
   * attempts ending is a reason to claim (without it, an endpoint's backlog went out
   * concurrencyPerEndpoint per poll interval, however fast it answered).
   */
  readonly #saturated = new Set<string>();
  /** Successes waiting to be settled together (settleSuccesses), and the batches running. */
  #successes: { attempt: SucceededAttempt; done: (settled: Settled) => void; fail: (e: unknown) => void }[] =
    [];
  #settling = 0;

  constructor(deps: DeliveryWorkerDeps) {
    this.#deps = deps;
    this.#settings = deps.settings;
    this.#logger = deps.logger.child({ component: 'webhook-delivery' });
    this.#sender = new WebhookSender(new SsrfGuard(deps.settings), deps.settings.requestTimeoutMs);
    this.#breakers = new EndpointBreakers({
      failures: deps.settings.breakerFailures,
      resetMs: deps.settings.breakerResetMs,
    });
  }

  async start(): Promise<void> {
    this.#listen = await ReconnectingSession.start({
      name: 'webhook deliveries LISTEN',
      connectionString: this.#deps.listenConnectionString,
      applicationName: 'sluice-webhooks-delivery',
      logger: this.#logger,
      setup: async (client) => {
        await client.query(`listen ${CHANNEL}`);
      },
      onNotification: (msg) => {
        if (msg.channel === CHANNEL) this.#wake();
      },
      // Notifications sent while disconnected are lost: look now.
      onConnected: (reconnected) => {
        if (reconnected) this.#wake();
      },
    });
    this.#unregisterBreakers = registerBreakers(this.#breakers);
    this.#loop = this.#run();
  }

  /**
   * Stops claiming, lets the attempts in flight finish for up to the request timeout (they are
   * bounded by it, settling included mostly), then abandons the rest: their leases bring them
   * back to this or another instance, with the same webhook-id. Closes the LISTEN session.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#wake();
    await this.#loop;
    if (this.#inFlight.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.#settings.requestTimeoutMs);
      });
      await Promise.race([Promise.allSettled([...this.#inFlight.values()]), deadline]);
      clearTimeout(timer);
      if (this.#inFlight.size > 0) {
        this.#logger.warn({ inFlight: this.#inFlight.size }, 'abandoning webhook attempts to their leases');
        this.#abandon.abort();
        await Promise.allSettled([...this.#inFlight.values()]);
      }
    }
    await this.#sender.close();
    await this.#listen?.close();
    this.#unregisterBreakers?.();
  }

  #wake(): void {
    this.#wakePending = true;
    this.#wakeUp?.();
  }

  async #run(): Promise<void> {
    while (!this.#closed) {
      this.#wakePending = false;
      let again = false;
      try {
        again = await this.#claim();
      } catch (err) {
        this.#logger.warn({ err }, 'claiming webhook deliveries failed; retrying');
        await this.#sleep(CLAIM_ERROR_DELAY_MS);
        continue;
      }
      if (again || this.#closed) continue;
      await this.#sleep(this.#settings.pollIntervalMs);
    }
  }

  /** Waits `ms`, or less when woken (a wake-up during the last claim counts). */
  #sleep(ms: number): Promise<void> {
    if (this.#wakePending || this.#closed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      this.#wakeUp = done;
      function done() {
        clearTimeout(timer);
        resolve();
      }
    }).then(() => {
      this.#wakeUp = undefined;
    });
  }

  /** One claim; true when it filled its batch and there is room for more (claim again now). */
  async #claim(): Promise<boolean> {
    const { concurrency, concurrencyPerEndpoint } = this.#settings;
    const free = concurrency - this.#inFlight.size;
    if (free <= 0) {
      this.#moreDue = true;
      return false;
    }
    const gates = this.#breakers.gates();
    const excluded = [...gates.excluded];
    const limited = new Map<string, number>();
    for (const [endpoint, n] of this.#perEndpoint) {
      if (n >= concurrencyPerEndpoint) excluded.push(endpoint);
      else limited.set(endpoint, concurrencyPerEndpoint - n);
    }
    for (const endpoint of gates.probes) {
      // Half-open: one probe, and only once nothing else of it is in flight.
      if ((this.#perEndpoint.get(endpoint) ?? 0) > 0) excluded.push(endpoint);
      else limited.set(endpoint, 1);
    }
    const limit = Math.min(free, CLAIM_BATCH);
    const claimed = await claimDeliveries(this.#deps.pool, {
      limit,
      leaseMs: this.#settings.requestTimeoutMs + LEASE_MARGIN_MS,
      excluded,
      limited,
      perEndpoint: concurrencyPerEndpoint,
    });
    // Cut short by its count or by MAX_CLAIM_BYTES: more may be due right away.
    const bytes = claimed.reduce((n, d) => n + d.payloadBytes, 0);
    this.#moreDue = claimed.length === limit || bytes >= MAX_CLAIM_BYTES;
    const taken = new Map<string, number>();
    for (const d of claimed) taken.set(d.endpointId, (taken.get(d.endpointId) ?? 0) + 1);
    for (const [endpoint, n] of taken)
      if (n >= (limited.get(endpoint) ?? concurrencyPerEndpoint)) this.#saturated.add(endpoint);
    for (const d of claimed) this.#start(d);
    return this.#moreDue && free - claimed.length > 0;
  }

  #start(d: ClaimedDelivery): void {
    const probe = this.#breakers.claimed(d.endpointId);
    this.#perEndpoint.set(d.endpointId, (this.#perEndpoint.get(d.endpointId) ?? 0) + 1);
    deliveriesInFlight.inc();
    const attempt = this.#attempt(d)
      .catch((err: unknown) => {
        // Settling failed (database away): the lease brings the delivery back.
        this.#logger.error({ err, deliveryId: d.id }, 'settling a webhook attempt failed');
      })
      .finally(() => {
        if (probe) this.#breakers.probeEnded(d.endpointId);
        this.#inFlight.delete(d.id);
        const n = (this.#perEndpoint.get(d.endpointId) ?? 1) - 1;
        if (n > 0) this.#perEndpoint.set(d.endpointId, n);
        else this.#perEndpoint.delete(d.endpointId);
        deliveriesInFlight.dec();
        // Room again: claim if more was due than we could take (in all, or of this endpoint), or
        // the next of a FIFO key waits. The next claim marks the endpoint again if still so.
        const saturated = this.#saturated.delete(d.endpointId);
        if (!this.#closed && (this.#moreDue || saturated || d.fifo)) this.#wake();
      });
    this.#inFlight.set(d.id, attempt);
  }

  async #attempt(d: ClaimedDelivery): Promise<void> {
    const startedAt = new Date();
    const span = startAttemptSpan(d);
    const headers = this.#headers(d, startedAt, span);
    let result: AttemptResult;
    try {
      result = await this.#sender.send({ url: d.url, headers, body: d.body }, this.#abandon.signal);
    } catch (err) {
      span?.end();
      if (err instanceof AttemptAbandoned) return;
      throw err;
    }
    deliveriesTotal.inc({ outcome: result.outcome });
    deliverySeconds.observe(result.durationMs / 1000);
    if (span) {
      if (result.statusCode !== undefined) span.setAttribute('http.response.status_code', result.statusCode);
      span.setAttribute('sluice.webhooks.outcome', result.outcome);
      if (result.outcome !== 'succeeded')
        span.setStatus({ code: SpanStatusCode.ERROR, message: result.error });
      span.end();
    }
    if (result.outcome === 'succeeded') {
      deliveryLagSeconds.observe(Math.max(0, Date.now() - d.messageCreatedMs) / 1000);
      const before = this.#breakers.succeeded(d.endpointId);
      if (before !== 'closed')
        this.#logger.info({ endpointId: d.endpointId }, 'webhook endpoint breaker closed');
      this.#after(d, await this.#settleInBatch({ delivery: d, startedAt, result }));
      return;
    }
    const blocked = result.outcome === 'blocked';
    // A blocked URL is refused before any connection: nothing is down, and each such delivery
    // fails at once; counting it would defer the others only to fail them one probe at a time.
    if (!blocked && this.#breakers.failed(d.endpointId) === 'open')
      this.#logger.warn(
        { endpointId: d.endpointId, resetMs: this.#settings.breakerResetMs },
        'webhook endpoint breaker open: its deliveries are deferred',
      );
    const retryInMs = blocked
      ? undefined
      : retryDelayMs(
          {
            attempts: d.attempt,
            overloaded: result.outcome === 'timeout' || result.statusCode === 429,
            ...(result.retryAfterMs !== undefined ? { retryAfterMs: result.retryAfterMs } : {}),
          },
          this.#settings,
        );
    const { disableAfterFailingMs } = this.#settings;
    const settled = await settleFailure(this.#deps.pool, d, startedAt, result, {
      retryInMs,
      gone: result.statusCode === 410,
      reportFailing: d.attempt >= FAILING_EVENT_AFTER_ATTEMPTS,
      checkDisable: d.failingSinceMs !== undefined && Date.now() - d.failingSinceMs > disableAfterFailingMs,
      disableAfterFailingMs,
      finalReason: blocked ? 'blocked' : 'exhausted',
    });
    this.#logger.info(
      {
        endpointId: d.endpointId,
        messageId: messageId(d.messageId),
        attempt: d.attempt,
        outcome: result.outcome,
        statusCode: result.statusCode,
        error: result.error,
        retryInMs: retryInMs ?? null,
      },
      retryInMs === undefined
        ? 'webhook attempt failed; the delivery failed'
        : 'webhook attempt failed; will retry',
    );
    this.#after(d, settled);
  }

  /**
   * Settles a success together with the others that finish meanwhile: one statement per batch,
   * at most SETTLE_PARALLEL at once, each loop taking what queued while it ran (so batches grow
   * with the load). Their row locks are taken in id order, so concurrent batches cannot deadlock.
   */
  #settleInBatch(attempt: SucceededAttempt): Promise<Settled> {
    return new Promise<Settled>((done, fail) => {
      this.#successes.push({ attempt, done, fail });
      if (this.#settling < SETTLE_PARALLEL) void this.#settleBatches();
    });
  }

  async #settleBatches(): Promise<void> {
    this.#settling++;
    try {
      while (this.#successes.length > 0) {
        const batch = this.#successes.splice(0, SETTLE_BATCH);
        try {
          const { settled, events } = await settleSuccesses(
            this.#deps.pool,
            batch.map((b) => b.attempt),
          );
          // The batch's events are announced once, with its first delivery.
          batch.forEach((b, i) => {
            b.done({ settled: settled.has(b.attempt.delivery.id), events: i === 0 ? events : [] });
          });
        } catch (err) {
          for (const b of batch) b.fail(err);
        }
      }
    } finally {
      this.#settling--;
    }
  }

  #after(d: ClaimedDelivery, settled: Settled): void {
    if (!settled.settled) {
      this.#logger.warn(
        { deliveryId: d.id, attempt: d.attempt },
        'webhook attempt finished after its lease ran out; another attempt owns the delivery',
      );
      return;
    }
    announceOperationalEvents(this.#logger, settled.events);
    if (settled.events.some((e) => e.event === 'disabled')) this.#breakers.forget(d.endpointId);
  }

  #headers(d: ClaimedDelivery, startedAt: Date, span: Span | undefined): Record<string, string> {
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(d.headers)) {
      const lower = name.toLowerCase();
      if (RESERVED_HEADERS.has(lower) || lower.startsWith('webhook-')) continue;
      headers[lower] = value;
    }
    const id = messageId(d.messageId);
    const timestamp = Math.floor(startedAt.getTime() / 1000);
    headers['content-type'] = 'application/json';
    headers['user-agent'] = USER_AGENT;
    headers['webhook-id'] = id;
    headers['webhook-timestamp'] = String(timestamp);
    headers['webhook-signature'] = signatureHeader(id, timestamp, d.body, d.secrets);
    if (d.sendTraceparent) {
      // The attempt's span when traced; otherwise the writer's own context, so the endpoint
      // still joins the trace of the write that caused the message.
      const sc = span?.spanContext();
      const traceparent = sc && trace.isSpanContextValid(sc) ? formatTraceparent(sc) : d.traceparent;
      if (traceparent) headers.traceparent = traceparent;
    }
    return headers;
  }
}

/**
 * A CLIENT span for one attempt, a root linked to the write that caused the message (its
 * stored traceparent): the way from a delivery back to its cause, as the change feed links
 * batches to writers. None when tracing is off.
 */
function startAttemptSpan(d: ClaimedDelivery): Span | undefined {
  const tracer = tracerFor('@sluice/webhooks');
  if (!tracer) return undefined;
  const writer = parseTraceparent(d.traceparent);
  const links: Link[] = writer ? [{ context: writer }] : [];
  let host = '';
  try {
    host = new URL(d.url).host;
  } catch {
    // An invalid URL fails the attempt; the span says so.
  }
  return tracer.startSpan(
    'sluice.webhooks.deliver',
    {
      kind: SpanKind.CLIENT,
      root: true,
      links,
      attributes: {
        'http.request.method': 'POST',
        'server.address': host,
        'sluice.webhooks.message_id': messageId(d.messageId),
        'sluice.webhooks.endpoint_id': d.endpointId,
        'sluice.webhooks.attempt': d.attempt,
      },
    },
    ROOT_CONTEXT,
  );
}
