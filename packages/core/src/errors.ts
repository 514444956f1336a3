import type { Reason } from './reasons';

/**
 * The closed set of errors Sluice code throws. Each carries a status code (named as gRPC names
 * them, so the gRPC boundary maps them one to one), a stable machine-readable `reason`
 * (google.rpc.ErrorInfo), optional field violations (google.rpc.BadRequest) and a `cause` that
 * is logged but never sent to a client.
 */
export type ErrorCode =
  | 'CANCELLED'
  | 'INVALID_ARGUMENT'
  | 'DEADLINE_EXCEEDED'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'PERMISSION_DENIED'
  | 'RESOURCE_EXHAUSTED'
  | 'FAILED_PRECONDITION'
  | 'ABORTED'
  | 'OUT_OF_RANGE'
  | 'UNIMPLEMENTED'
  | 'INTERNAL'
  | 'UNAVAILABLE'
  | 'UNAUTHENTICATED';

/** One offending field of a request: `field` is a path such as `filter.and[1].column`. */
export interface FieldViolation {
  readonly field: string;
  readonly description: string;
}

export interface SluiceErrorOptions {
  /** Stable reason for ErrorInfo, from the closed list in reasons.ts; default `SLUICE_<code>`. */
  readonly reason?: Reason;
  readonly violations?: readonly FieldViolation[];
  /** Extra ErrorInfo metadata (strings only); must not carry secrets. */
  readonly metadata?: Readonly<Record<string, string>>;
  readonly cause?: unknown;
}

/**
 * Stable `reason` strings (google.rpc.ErrorInfo) for the limits that keep one caller from taking
 * what every caller shares (pooled connections, streams). All are RESOURCE_EXHAUSTED except
 * `snapshotTimeout` (DEADLINE_EXCEEDED); clients retry them with backoff.
 */
export const LimitReason = {
  /** This identity (role + `sub`) already holds its share of this kind of work; metadata `limit`, `kind`. */
  identityLimit: 'SLUICE_IDENTITY_LIMIT',
  /** The whole instance holds as much of this kind of work as it allows; metadata `limit`, `kind`. */
  totalLimit: 'SLUICE_TOTAL_LIMIT',
  /** A stream's client did not take the next message within the stall timeout; the stream ended. */
  streamStalled: 'SLUICE_STREAM_STALLED',
  /** An events snapshot took longer than its time limit; narrow the filter. DEADLINE_EXCEEDED. */
  snapshotTimeout: 'SLUICE_SNAPSHOT_TIMEOUT',
} as const;

export type LimitReason = (typeof LimitReason)[keyof typeof LimitReason];

export class SluiceError extends Error {
  override readonly name = 'SluiceError';
  readonly code: ErrorCode;
  readonly reason: Reason;
  readonly violations: readonly FieldViolation[];
  readonly metadata: Readonly<Record<string, string>>;

  constructor(code: ErrorCode, message: string, options: SluiceErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.reason = options.reason ?? (`SLUICE_${code}` satisfies Reason);
    this.violations = options.violations ?? [];
    this.metadata = options.metadata ?? {};
  }
}

/** A request field that is wrong: INVALID_ARGUMENT with one field violation. */
export function invalidArgument(
  reason: Reason,
  field: string,
  description: string,
  metadata?: Record<string, string>,
): SluiceError {
  return new SluiceError('INVALID_ARGUMENT', description, {
    reason,
    violations: [{ field, description }],
    ...(metadata ? { metadata } : {}),
  });
}

export function isSluiceError(error: unknown): error is SluiceError {
  return error instanceof SluiceError;
}
