import { ClientError, Status } from 'nice-grpc';
import { BadRequest, ErrorInfo, RichClientError } from 'nice-grpc-error-details';
import { expect } from 'vitest';

export interface Rejection {
  readonly code: Status;
  readonly reason: string;
  readonly message: string;
  readonly metadata: Record<string, string>;
  /** Field paths of the BadRequest violations, in order. */
  readonly fields: readonly string[];
}

/**
 * Awaits a call that must fail, asserts its status code and (when given) its ErrorInfo reason,
 * and returns the decoded error details for further assertions.
 */
export async function expectRejection(
  call: Promise<unknown>,
  expected: { code: Status; reason?: string },
): Promise<Rejection> {
  let error: unknown;
  try {
    await call;
  } catch (e) {
    error = e;
  }
  expect(error, 'the call should have been rejected').toBeInstanceOf(ClientError);
  const e = error as ClientError;
  const extra = error instanceof RichClientError ? error.extra : [];
  const info = extra.find((d) => d.$type === ErrorInfo.$type) as ErrorInfo | undefined;
  const bad = extra.find((d) => d.$type === BadRequest.$type) as BadRequest | undefined;
  const rejection: Rejection = {
    code: e.code,
    reason: info?.reason ?? '',
    message: e.details,
    metadata: info?.metadata ?? {},
    fields: bad?.fieldViolations.map((v) => v.field) ?? [],
  };
  expect({ code: Status[rejection.code], reason: rejection.reason }).toMatchObject({
    code: Status[expected.code],
    ...(expected.reason === undefined ? {} : { reason: expected.reason }),
  });
  return rejection;
}
