import { ClientError, Status } from 'nice-grpc';
import { BadRequest, ErrorInfo, RichClientError } from 'nice-grpc-error-details';
import { expect } from 'vitest';
import type { EventsClient } from './helpers';
import type { SubscribeReq } from './open-stream';

export interface Rejection {
  readonly code: Status;
  readonly reason: string;
  readonly message: string;
  readonly metadata: Record<string, string>;
  /** Field paths of the BadRequest violations, in order. */
  readonly fields: readonly string[];
}

/** Decodes a gRPC error and asserts its code and (when given) its ErrorInfo reason. */
export function expectStatus(error: unknown, expected: { code: Status; reason?: string }): Rejection {
  expect(error, 'the call should have failed with a gRPC status').toBeInstanceOf(ClientError);
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

/**
 * Opens a stream that must fail before delivering any change (errors on server streams surface
 * when iterating), and asserts its status. Heartbeats before the error are ignored.
 */
export async function expectSubscribeRejected(
  client: EventsClient,
  request: SubscribeReq,
  expected: { code: Status; reason?: string },
  timeoutMs = 10_000,
): Promise<Rejection> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  let error: unknown;
  try {
    for await (const m of client.subscribe(request, { signal: controller.signal })) {
      if (m.message?.$case !== 'heartbeat') throw new Error(`unexpected ${m.message?.$case} message`);
    }
  } catch (e) {
    error = e;
  } finally {
    clearTimeout(timer);
  }
  return expectStatus(error, expected);
}
