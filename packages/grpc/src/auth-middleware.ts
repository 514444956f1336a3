import type { Identity } from '@sluice/core';
import type { CallContext, ServerMiddlewareCall } from 'nice-grpc';
import type { SluiceCallContext } from './call-middleware';

/** Verifies the `authorization` metadata value and returns who the call runs as. */
export type Authenticate = (
  authorization: string | undefined,
  options: { signal: AbortSignal },
) => Promise<Identity>;

/** Handlers behind the auth middleware always have an identity. */
export interface AuthenticatedContext extends SluiceCallContext {
  readonly identity: Identity;
}

/**
 * Authenticates every call before its handler runs; a missing, invalid or forbidden token ends
 * the call with the authenticator's error (UNAUTHENTICATED / PERMISSION_DENIED / UNAVAILABLE).
 */
export function authMiddleware(authenticate: Authenticate) {
  return async function* auth<Request, Response>(
    call: ServerMiddlewareCall<Request, Response, AuthenticatedContext>,
    context: CallContext & SluiceCallContext,
  ) {
    const identity = await authenticate(context.metadata.get('authorization'), {
      signal: context.sluice.signal,
    });
    context.sluice.identity = identity;
    return yield* call.next(call.request, { ...context, identity });
  };
}
