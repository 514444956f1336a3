import type { AddressInfo } from 'node:net';
import { ROOT_CONTEXT, type Span, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import type { SchemaCatalog } from '@sluice/db';
import { parseTraceparent, tracerFor } from '@sluice/observability';
import Fastify, { type FastifyError, type FastifyReply, type FastifyRequest } from 'fastify';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { InboundSettings } from '../config';
import { IngressError } from './errors';
import { InboxWriter, isUnreachable } from './inbox';
import { inboundRejected, inboundRequests } from './metrics';
import { TokenBuckets } from './rate-limit';
import { describeEvent, verifyRequest } from './receive';
import { type InboundSource, SourceCache } from './sources';
import type { VerifyFailure } from './verify';

export interface IngressDeps {
  readonly pool: pg.Pool;
  readonly logger: Logger;
  readonly catalog: () => SchemaCatalog;
  readonly settings: InboundSettings;
  /** Body bytes all requests in flight may hold at once (default MAX_BUFFERED_BYTES). */
  readonly maxBufferedBytes?: number;
}

export interface Ingress {
  /** The port listened on (useful with port 0). */
  readonly port: number;
  close(): Promise<void>;
}

/** Source names as the sources table allows them; anything else is not looked up. */
const SOURCE_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
/** A refused signature re-reads the source when its cached secrets are older than this (a rotation just made). */
const REFRESH_ON_FAILURE_MS = 500;
/**
 * Body bytes all requests in flight hold at most, by default. A body is read whole before its
 * signature can be checked, so without a bound anyone could open a few thousand requests to a
 * known source and have each buffer its full limit; past it a request is refused with 503.
 */
const MAX_BUFFERED_BYTES = 256 * 1024 * 1024;
/** close() waits this long for requests in flight, then closes their connections. */
const CLOSE_GRACE_MS = 5_000;

/** What the hooks learn about a request before its handler runs. */
interface RequestState {
  source?: InboundSource;
  /** Ends reading the body: the source's limit once known. */
  maxBodyBytes: number;
  /** The request's SERVER span when tracing is on. */
  span?: Span;
  /** Body bytes this request holds, counted in the ingress's total until it is answered. */
  held: number;
}

/**
 * The HTTP ingress: `POST /webhooks/{source}` (issue 9 section 2, README "Inbound webhooks").
 *
 * Per request, cheapest refusal first: the source (404), its rate limit (429, charged only for
 * requests whose signature verifies), the declared
 * Content-Length (413); then the body is read, stopping as soon as it passes the source's limit
 * (413, connection closed); the signature is checked on those exact bytes (401); the event's id,
 * type and (supabase-database) typed change are read (400/422); and the event is stored in the
 * inbox in one statement. 200 is sent only after that statement committed; a duplicate gets the
 * same 200 with the first copy's id. A database that cannot be reached is 503 with Retry-After.
 *
 * Answers are JSON: `{"id": "<inbox id>", "external_id": "...", "duplicate": false}` or
 * `{"error": {"code": "...", "message": "...", "field"?: "..."}}`.
 */
export async function startIngress(deps: IngressDeps): Promise<Ingress> {
  const { pool, settings, catalog } = deps;
  const logger = deps.logger.child({ component: 'ingress' });
  const sources = new SourceCache(pool);
  const buckets = new TokenBuckets();
  // Two statements at a time (fewer on a tiny pool, which the workers and consumers share): what
  // arrives meanwhile waits and goes in the next one, so batches grow with the load and a burst
  // costs few commits. More in flight only splits the same events over more commits (on this
  // 2-core machine the bench measured no gain from 5); a batch holds up to 256 events anyway.
  const inbox = new InboxWriter(pool, {
    maxInFlight: Math.max(1, Math.min(2, Math.floor((pool.options.max ?? 10) / 2))),
  });
  const states = new WeakMap<FastifyRequest, RequestState>();
  const stateOf = (request: FastifyRequest): RequestState => {
    let state = states.get(request);
    if (!state) {
      state = { maxBodyBytes: settings.maxBodyBytes, held: 0 };
      states.set(request, state);
    }
    return state;
  };
  const maxBuffered = deps.maxBufferedBytes ?? MAX_BUFFERED_BYTES;
  let buffered = 0;
  const release = (state: RequestState) => {
    buffered -= state.held;
    state.held = 0;
  };
  const unavailable = (cause: unknown) =>
    new IngressError('database_unavailable', 'the database is unavailable; retry later', {
      retryAfterSeconds: settings.retryAfterSeconds,
      cause,
    });
  const loadSource = async (name: string, maxAgeMs?: number) => {
    try {
      return await sources.get(name, maxAgeMs);
    } catch (error) {
      throw isUnreachable(error) ? unavailable(error) : error;
    }
  };

  const app = Fastify({
    logger: false,
    exposeHeadRoutes: false,
    forceCloseConnections: 'idle',
    // A sender that trickles its request is cut off (slowloris); webhooks are small and quick.
    requestTimeout: 60_000,
  });
  // Every body arrives as the exact bytes, whatever its content type: signatures are over them.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (request, payload, done) => {
    const state = stateOf(request);
    const limit = state.maxBodyBytes;
    const chunks: Buffer[] = [];
    let size = 0;
    const stop = () => {
      payload.removeListener('data', onData);
      payload.removeListener('end', onEnd);
      payload.removeListener('error', onEnd);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        // Stop here; fastify answers with Connection: close, so the rest is never read.
        stop();
        payload.pause();
        done(tooLarge(limit), undefined);
        return;
      }
      if (buffered + chunk.length > maxBuffered) {
        stop();
        payload.pause();
        done(
          new IngressError('overloaded', 'too many request bodies are being received; retry later', {
            retryAfterSeconds: settings.retryAfterSeconds,
          }),
          undefined,
        );
        return;
      }
      buffered += chunk.length;
      state.held += chunk.length;
      chunks.push(chunk);
    };
    const onEnd = (error?: Error) => {
      stop();
      if (error) done(error, undefined);
      else done(null, Buffer.concat(chunks, size));
    };
    payload.on('data', onData);
    payload.on('end', onEnd);
    payload.on('error', onEnd);
  });

  app.route({
    method: 'POST',
    url: '/webhooks/:source',
    async onRequest(request) {
      const name = (request.params as { source: string }).source;
      const source = SOURCE_NAME.test(name) ? await loadSource(name) : undefined;
      if (!source) throw new IngressError('unknown_source', 'no such webhook source');
      const state = stateOf(request);
      state.source = source;
      state.maxBodyBytes = source.settings.maxBodyBytes ?? settings.maxBodyBytes;
      // Only verified requests are charged (in the handler): see TokenBuckets.
      const wait = buckets.wait(source.id, source.settings.ratePerSecond ?? settings.ratePerSecond);
      if (wait > 0)
        throw new IngressError('rate_limited', 'too many requests for this source', {
          retryAfterSeconds: wait,
        });
      const declared = Number(request.headers['content-length']);
      if (declared > state.maxBodyBytes) throw tooLarge(state.maxBodyBytes);
    },
    async handler(request, reply) {
      const state = stateOf(request);
      let source = state.source as InboundSource;
      const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
      const now = Date.now();
      let verified = verifyRequest(source, body, request.headers, now, settings.toleranceSeconds);
      if (
        !verified.ok &&
        verified.failure === 'bad_signature' &&
        sources.age(source.name) > REFRESH_ON_FAILURE_MS
      ) {
        // Perhaps a secret was just added: check once against the source as stored now.
        const fresh = await loadSource(source.name, 0);
        if (!fresh) throw new IngressError('unknown_source', 'no such webhook source');
        source = fresh;
        state.source = fresh;
        verified = verifyRequest(source, body, request.headers, now, settings.toleranceSeconds);
      }
      if (!verified.ok) throw new IngressError(verified.failure, SIGNATURE_MESSAGES[verified.failure]);
      buckets.charge(source.id, source.settings.ratePerSecond ?? settings.ratePerSecond);
      const event = describeEvent({ source, body, headers: request.headers, catalog }, verified);
      let stored: Awaited<ReturnType<InboxWriter['store']>>;
      try {
        stored = await inbox.store(source, event, body);
      } catch (error) {
        throw isUnreachable(error) ? unavailable(error) : error;
      }
      return reply
        .code(200)
        .send({ id: stored.id, external_id: event.externalId, duplicate: stored.duplicate });
    },
  });

  app.route({
    method: ['GET', 'HEAD', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'],
    url: '/webhooks/:source',
    async handler(_request, reply) {
      reply.header('allow', 'POST');
      throw new IngressError('method_not_allowed', 'only POST is accepted here');
    },
  });

  app.setNotFoundHandler(async () => {
    throw new IngressError('not_found', 'no such path; webhooks are posted to /webhooks/{source}');
  });

  app.setErrorHandler(
    async (raw: FastifyError | IngressError, request: FastifyRequest, reply: FastifyReply) => {
      const error = raw instanceof IngressError ? raw : fromFastify(raw);
      const source = stateOf(request).source?.name ?? '';
      inboundRejected.inc({ source, reason: error.reason });
      const fields = { source, reason: error.reason, status: error.status, remote: request.ip };
      if (error.reason === 'overloaded') logger.warn(fields, `inbound webhook refused: ${error.message}`);
      else if (error.status >= 500 && error.reason !== 'database_unavailable')
        logger.error({ ...fields, err: error.cause ?? raw }, 'inbound webhook failed');
      else if (error.reason === 'database_unavailable')
        logger.warn({ ...fields, err: error.cause }, 'inbound webhook refused: database unavailable');
      else
        logger.info({ ...fields, field: error.options.field }, `inbound webhook refused: ${error.message}`);
      if (error.options.retryAfterSeconds !== undefined)
        reply.header('retry-after', String(error.options.retryAfterSeconds));
      // The rest of the body is not read: the connection cannot carry another request.
      if (error.status === 413 || error.reason === 'overloaded') reply.header('connection', 'close');
      return reply.code(error.status).send(error.body());
    },
  );

  // One SERVER span per request, a child of the sender's traceparent when it sent one.
  app.addHook('onRequest', async (request) => {
    const tracer = tracerFor('@sluice/webhooks');
    if (!tracer) return;
    const remote = parseTraceparent(request.headers.traceparent as string | undefined);
    const parent = remote ? trace.setSpanContext(ROOT_CONTEXT, remote) : ROOT_CONTEXT;
    stateOf(request).span = tracer.startSpan(
      `${request.method} /webhooks/{source}`,
      {
        kind: SpanKind.SERVER,
        attributes: { 'http.request.method': request.method, 'url.path': request.url },
      },
      parent,
    );
  });

  app.addHook('onResponse', async (request, reply) => {
    const state = stateOf(request);
    release(state);
    inboundRequests.inc({ source: state.source?.name ?? '', status: String(reply.statusCode) });
    if (state.span) {
      if (state.source) state.span.setAttribute('sluice.webhooks.source', state.source.name);
      state.span.setAttribute('http.response.status_code', reply.statusCode);
      if (reply.statusCode >= 500) state.span.setStatus({ code: SpanStatusCode.ERROR });
      state.span.end();
    }
  });

  app.addHook('onRequestAbort', async (request) => {
    const state = stateOf(request);
    release(state);
    state.span?.end();
  });

  const { host, port } = splitAddress(settings.httpAddress);
  await app.listen({ host, port });
  const address = app.server.address() as AddressInfo;
  logger.info({ address: `${host}:${address.port}` }, 'webhooks ingress listening');
  return {
    port: address.port,
    async close() {
      // Stop accepting, let requests in flight finish (their events may be committing), and cut
      // what is still open after the grace.
      const timer = setTimeout(() => app.server.closeAllConnections(), CLOSE_GRACE_MS);
      timer.unref();
      // A keep-alive connection that was busy when closing began goes idle once its answer is
      // sent: close it then, rather than wait for its keep-alive timeout.
      const idle = setInterval(() => app.server.closeIdleConnections(), 50);
      idle.unref();
      try {
        await app.close();
      } finally {
        clearTimeout(timer);
        clearInterval(idle);
      }
    },
  };
}

const SIGNATURE_MESSAGES: Readonly<Record<VerifyFailure, string>> = {
  missing_signature: 'the signature (or a header it needs) is missing',
  malformed_signature: 'the signature header is not in the format of the source kind',
  stale_timestamp: 'the signed timestamp is outside the tolerance',
  bad_signature: 'no signature matches a secret of the source',
};

function tooLarge(limit: number): IngressError {
  return new IngressError('body_too_large', `the body is larger than ${limit} bytes`);
}

/** Fastify's own refusals (unparsable Content-Type, a bad Content-Length…) in the ingress's terms. */
function fromFastify(error: FastifyError): IngressError {
  const status = error.statusCode ?? 500;
  if (status === 413) return new IngressError('body_too_large', 'the body is too large');
  if (status === 415) return new IngressError('unsupported_media_type', 'the Content-Type cannot be parsed');
  if (status === 400) return new IngressError('malformed_request', 'the request is malformed');
  return new IngressError('internal', 'internal error', { cause: error });
}

function splitAddress(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  const host = address.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  return { host: host || '0.0.0.0', port: Number(address.slice(colon + 1)) };
}
