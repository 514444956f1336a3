import { randomUUID } from 'node:crypto';
import { type Identity, type RequestContext, SluiceError } from '@sluice/core';
import { grpcHandled, grpcHandling, grpcStarted } from '@sluice/observability';
import { isAbortError } from 'abort-controller-x';
import { type CallContext, type ServerMiddlewareCall, Status } from 'nice-grpc';
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
  /** W3C trace id from `traceparent` metadata, when the caller sent one. */
  readonly traceId: string | undefined;
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
    const traceId = TRACEPARENT_RE.exec(context.metadata.get('traceparent') ?? '')?.[1];
    const method = call.method.path;
    const logger = options.logger.child({
      method,
      request_id: requestId,
      ...(traceId ? { trace_id: traceId } : {}),
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
    };
    context.header.set('x-request-id', requestId);

    // /pkg.Service/Method: both names come from the proto, a bounded label set.
    const slash = method.lastIndexOf('/');
    const labels = {
      grpc_service: method.slice(1, slash),
      grpc_method: method.slice(slash + 1),
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
      return yield* call.next(call.request, { ...context, signal, sluice: request });
    } catch (error) {
      const mapped = toStatusError(error, signal);
      code = mapped.code;
      if (mapped.code === Status.INTERNAL) logger.error({ err: error }, 'internal error');
      throw mapped;
    } finally {
      dispose();
      grpcHandled.inc({ ...labels, grpc_code: statusName(code) });
      grpcHandling.observe(labels, (performance.now() - started) / 1000);
      const identity = request.identity;
      const fields = {
        grpc_code: statusName(code),
        duration_ms: Math.round((performance.now() - started) * 100) / 100,
        role: identity?.role,
        user_id: identity?.userId,
        tenant_id: identity?.tenantId,
      };
      if (code === Status.INTERNAL || code === Status.UNKNOWN) logger.warn(fields, 'rpc');
      else logger.info(fields, 'rpc');
    }
  };
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
