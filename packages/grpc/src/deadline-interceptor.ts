import {
  ServerInterceptingCall,
  type ServerInterceptingCallInterface,
  type ServerInterceptor,
} from '@grpc/grpc-js';

/** Metadata key the interceptor uses to hand the call's deadline (epoch ms) to nice-grpc handlers. */
export const DEADLINE_METADATA_KEY = 'x-sluice-deadline-ms';

/**
 * nice-grpc gives handlers an AbortSignal but not the deadline, and grpc-js removes the
 * `grpc-timeout` header before handlers see the metadata. This grpc-js server interceptor reads
 * the deadline grpc-js parsed and puts it into the metadata under a private key (overwriting any
 * value a client sent), so the call context can derive statement timeouts from it.
 */
export const deadlineInterceptor: ServerInterceptor = (_method, call: ServerInterceptingCallInterface) =>
  new ServerInterceptingCall(call, {
    start(next) {
      next({
        onReceiveMetadata(metadata, nextMetadata) {
          metadata.remove(DEADLINE_METADATA_KEY);
          const deadline = call.getDeadline();
          const ms = deadline instanceof Date ? deadline.getTime() : deadline;
          if (Number.isFinite(ms)) metadata.set(DEADLINE_METADATA_KEY, String(ms));
          nextMetadata(metadata);
        },
      });
    },
  });
