import type { ErrorCode, SluiceError } from '@sluice/core';
import { Status } from 'nice-grpc-common';
import { BadRequest, ErrorInfo, RichServerError } from 'nice-grpc-error-details';

const STATUS_BY_CODE: Readonly<Record<ErrorCode, Status>> = {
  CANCELLED: Status.CANCELLED,
  INVALID_ARGUMENT: Status.INVALID_ARGUMENT,
  DEADLINE_EXCEEDED: Status.DEADLINE_EXCEEDED,
  NOT_FOUND: Status.NOT_FOUND,
  ALREADY_EXISTS: Status.ALREADY_EXISTS,
  PERMISSION_DENIED: Status.PERMISSION_DENIED,
  RESOURCE_EXHAUSTED: Status.RESOURCE_EXHAUSTED,
  FAILED_PRECONDITION: Status.FAILED_PRECONDITION,
  ABORTED: Status.ABORTED,
  OUT_OF_RANGE: Status.OUT_OF_RANGE,
  UNIMPLEMENTED: Status.UNIMPLEMENTED,
  INTERNAL: Status.INTERNAL,
  UNAVAILABLE: Status.UNAVAILABLE,
  UNAUTHENTICATED: Status.UNAUTHENTICATED,
};

/** The domain of every google.rpc.ErrorInfo Sluice sends. */
export const ERROR_DOMAIN = 'sluice.dev';

/**
 * Turns a SluiceError into the gRPC status a client sees: its code, its message, an ErrorInfo
 * with the stable reason and metadata, and a BadRequest listing field violations, if any.
 * The `cause` never leaves the server.
 */
export function toServerError(error: SluiceError): RichServerError {
  const details = [
    ErrorInfo.fromPartial({ reason: error.reason, domain: ERROR_DOMAIN, metadata: { ...error.metadata } }),
  ];
  if (error.violations.length > 0) {
    details.push(
      BadRequest.fromPartial({
        fieldViolations: error.violations.map((v) => ({ field: v.field, description: v.description })),
      }) as never,
    );
  }
  return new RichServerError(STATUS_BY_CODE[error.code], error.message, details);
}

export function statusName(code: Status): string {
  return Status[code] ?? String(code);
}
