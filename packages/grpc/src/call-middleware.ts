import { randomUUID } from 'node:crypto';
import {
  type Context,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  trace,
} from '@opentelemetry/api';
import { type Identity, type RequestContext, SluiceError } from '@sluice/core';
import { bindIterator, grpcHandled, grpcHandling, grpcStarted, tracerFor } from '@sluice/observability';
import { isAbortError } from 'abort-controller-x';
import { type CallContext, type Metadata, type ServerMiddlewareCall, Status } from 'nice-grpc';
import { ServerError } from 'nice-grpc-common';
import type { Logger } from 'pino';
import { DEADLINE_METADATA_KEY } from './deadline-interceptor';
import { rejectUndecodable } from './request-decoding';
import { statusName, toServerError } from './status';

/** What every Sluice handler finds in its call context, next to nice-grpc's own fields. */
export interface SluiceCallContext {
  readonly sluice: SluiceRequest;
}

/** The RequestContext plus a slot for the caller's identity, filled by the auth middleware. */
export interface SluiceRequest extends RequestContext {
  identity: Identity | undefined;
  /**
   * W3C trace id of the call: its server span's when tracing records it, else the caller's
   * (`traceparent` metadata), when it sent one.
   */
  readonly traceId: string | undefined;
  /** The caller's `traceparent`, as sent (stored with changes when tracing is off). */
  readonly traceparent: string | undefined;
}

export interface CallMiddlewareOptions {
  readonly logger: Logger;
  /** Aborted when the server shuts down: running calls end with UNAVAILABLE ("retry elsewhere"). */
  readonly shutdownSignal: AbortSignal;
}

const TRACEPARENT_RE = /^[\da-f]{2}-([\da-f]{32})-[\da-f]{16}-[\da-f]{2}$/;

/**
 * The one adapter between nice-grpc and Sluice handlers: gives each call a RequestContext
 * (signal that aborts on cancel, deadline or shutdown with a reason saying which; request id;
 * scoped logger), writes one log line per call, and is the single boundary where errors become
 * gRPC statuses — a SluiceError keeps its code and details, anything else becomes INTERNAL with
 * a generic message while the cause goes to the log.
 */
export function callMiddleware(options: CallMiddlewareOptions) {
  return async function* sluiceCall<Request, Response>(
    call: ServerMiddlewareCall<Request, Response, SluiceCallContext>,
    context: CallContext,
  ) {
    const started = performance.now();
    const requestId = context.metadata.get('x-request-id')?.slice(0, 128) || randomUUID();
    const deadlineMs = Number(context.metadata.get(DEADLINE_METADATA_KEY));
    const deadline = Number.isFinite(deadlineMs) && deadlineMs > 0 ? new Date(deadlineMs) : undefined;
    const callerTraceparent = context.metadata.get('traceparent');
    const callerTraceId = TRACEPARENT_RE.exec(callerTraceparent ?? '')?.[1];
    const method = call.method.path;
    // /pkg.Service/Method: both names come from the proto, a bounded label set.
    const slash = method.lastIndexOf('/');
    const rpcService = method.slice(1, slash);
    const rpcMethod = method.slice(slash + 1);
    const { span, spanContext } = startServerSpan(context.metadata, method, rpcService, rpcMethod);
    const recorded = span?.isRecording() ? span.spanContext() : undefined;
    const traceId = recorded?.traceId ?? callerTraceId;
    const logger = options.logger.child({
      method,
      request_id: requestId,
      ...(traceId ? { trace_id: traceId } : {}),
      ...(recorded ? { span_id: recorded.spanId } : {}),
    });
    const { signal, dispose } = callSignal(context.signal, deadline, options.shutdownSignal);
    const request: SluiceRequest = {
      signal,
      deadline,
      requestId,
      method,
      logger,
      identity: undefined,
      traceId,
      traceparent: callerTraceId ? callerTraceparent : undefined,
    };
    context.header.set('x-request-id', requestId);

    const labels = {
      grpc_service: rpcService,
      grpc_method: rpcMethod,
      grpc_type: call.method.requestStream
        ? call.method.responseStream
          ? 'bidi_stream'
          : 'client_stream'
        : call.method.responseStream
          ? 'server_stream'
          : 'unary',
    };
    grpcStarted.inc(labels);
    let code = Status.OK;
    try {
      if (!call.requestStream) rejectUndecodable(call.request);
      // biome-ignore lint/suspicious/noConfusingVoidType: nice-grpc's next() returns void for streams.
      const handler: AsyncGenerator<Response, Response | void, undefined> = call.next(call.request, {
        ...context,
        signal,
        sluice: request,
      });
      // A sampled call's span is the active context in every step of the handler (see
      // bindIterator), so its SQL spans are children and its writes store its traceparent. An
      // unsampled one is not activated: nothing beneath it would be recorded, its writes store
      // the caller's traceparent, and activating costs every call a context switch per step.
      return yield* spanContext && recorded ? bindIterator(spanContext, handler) : handler;
    } catch (error) {
      const mapped = toStatusError(error, signal);
      code = mapped.code;
      // Who called goes with the error too, so "errors of tenant X" finds it without the rpc line.
      if (mapped.code === Status.INTERNAL)
        logger.error({ err: error, ...who(request.identity) }, 'internal error');
      throw mapped;
    } finally {
      dispose();
      if (span) endServerSpan(span, code);
      grpcHandled.inc({ ...labels, grpc_code: statusName(code) });
      grpcHandling.observe(labels, (performance.now() - started) / 1000);
      const fields = {
        grpc_code: statusName(code),
        duration_ms: Math.round((performance.now() - started) * 100) / 100,
        ...who(request.identity),
      };
      if (code === Status.INTERNAL || code === Status.UNKNOWN) logger.warn(fields, 'rpc');
      else logger.info(fields, 'rpc');
    }
  };
}

/** The caller's log fields: role, user and tenant (never the token or its other claims). */
function who(identity: Identity | undefined) {
  return { role: identity?.role, user_id: identity?.userId, tenant_id: identity?.tenantId };
}

const METADATA_GETTER: TextMapGetter<Metadata> = {
  get: (metadata, key) => {
    const value = metadata.get(key);
    return typeof value === 'string' ? value : undefined;
  },
  keys: (metadata) => [...metadata].map(([key]) => key),
};

/**
 * The call's SERVER span, child of the caller's `traceparent` (W3C propagator), and the context
 * that makes it active; nothing when tracing is off.
 */
function startServerSpan(
  metadata: Metadata,
  method: string,
  rpcService: string,
  rpcMethod: string,
): { span?: Span; spanContext?: Context } {
  const tracer = tracerFor('@sluice/grpc');
  if (!tracer) return {};
  const parent = propagation.extract(ROOT_CONTEXT, metadata, METADATA_GETTER);
  const span = tracer.startSpan(
    method.slice(1),
    {
      kind: SpanKind.SERVER,
      attributes: { 'rpc.system': 'grpc', 'rpc.service': rpcService, 'rpc.method': rpcMethod },
    },
    parent,
  );
  return { span, spanContext: trace.setSpan(parent, span) };
}

// The codes OpenTelemetry's gRPC conventions count as server faults; the rest are the caller's.
const SERVER_FAULTS: ReadonlySet<Status> = new Set([
  Status.UNKNOWN,
  Status.DEADLINE_EXCEEDED,
  Status.UNIMPLEMENTED,
  Status.INTERNAL,
  Status.UNAVAILABLE,
  Status.DATA_LOSS,
]);

function endServerSpan(span: Span, code: Status): void {
  span.setAttribute('rpc.grpc.status_code', code);
  if (SERVER_FAULTS.has(code)) {
    span.setAttribute('error.type', statusName(code));
    span.setStatus({ code: SpanStatusCode.ERROR, message: statusName(code) });
  }
  span.end();
}

function toStatusError(error: unknown, signal: AbortSignal): ServerError {
  if (error instanceof SluiceError) return toServerError(error);
  if (error instanceof ServerError) return error;
  if (isAbortError(error) || signal.aborted) {
    const reason: unknown = signal.reason;
    if (reason instanceof SluiceError) return toServerError(reason);
    return new ServerError(Status.CANCELLED, 'The call was cancelled');
  }
  return new ServerError(Status.INTERNAL, 'Internal error');
}

/**
 * The call's signal, aborting with a SluiceError reason that says why: CANCELLED (client went
 * away), DEADLINE_EXCEEDED (its deadline passed) or UNAVAILABLE (server shutting down).
 */
function callSignal(
  clientSignal: AbortSignal,
  deadline: Date | undefined,
  shutdownSignal: AbortSignal,
): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const expired = () => new SluiceError('DEADLINE_EXCEEDED', 'The deadline passed before the call finished');
  const onClient = () => {
    const pastDeadline = deadline !== undefined && Date.now() >= deadline.getTime() - 2;
    controller.abort(pastDeadline ? expired() : new SluiceError('CANCELLED', 'The call was cancelled'));
  };
  const onShutdown = () =>
    controller.abort(
      new SluiceError('UNAVAILABLE', 'The server is shutting down; retry the call', {
        reason: 'SLUICE_SHUTTING_DOWN',
      }),
    );
  let timer: NodeJS.Timeout | undefined;
  if (deadline) {
    timer = setTimeout(() => controller.abort(expired()), Math.max(0, deadline.getTime() - Date.now()));
    timer.unref();
  }
  if (clientSignal.aborted) onClient();
  else clientSignal.addEventListener('abort', onClient, { once: true });
  if (shutdownSignal.aborted) onShutdown();
  else shutdownSignal.addEventListener('abort', onShutdown, { once: true });
  return {
    signal: controller.signal,
    dispose: () => {
      clearTimeout(timer);
      clientSignal.removeEventListener('abort', onClient);
      shutdownSignal.removeEventListener('abort', onShutdown);
    },
  };
}
