import { type Position, PositionCodec } from '@sluice/changes';
import type { events, Value } from '@sluice/proto';
import { loadEventsConfig } from '../src/config';
import { type EventsClient, TEST_JWT_SECRET } from './helpers';

/** A Subscribe stream consumed in the background into arrays. */
export interface StreamCollector {
  /** Every message received, in order. */
  readonly messages: events.SubscribeResponse[];
  /** The change events received, in order. */
  readonly changes: events.ChangeEvent[];
  /** Position of the last change, snapshot_end or heartbeat received (the resume point). */
  readonly lastPosition: string | undefined;
  /** The error the stream ended with, unless it was stopped by `stop()` / `stopAfterChanges`. */
  readonly error: unknown;
  /** True once the stream has ended (error, stop or stopAfterChanges). */
  readonly ended: boolean;
  /** Resolves when the stream has ended; never rejects (see `error`). */
  readonly done: Promise<void>;
  /** Cancels the call and waits for the consumer to finish. */
  stop(): Promise<void>;
}

export interface CollectOptions {
  /** Cancel the call right after this many change events (nothing after them is recorded). */
  readonly stopAfterChanges?: number;
  /** Cancel the call right after the snapshot_end message. */
  readonly stopAfterSnapshotEnd?: boolean;
  /** Cancel the call right after a message for which this returns true (it is recorded). */
  readonly stopWhen?: (message: events.SubscribeResponse, changesSoFar: number) => boolean;
  /** Called for every message, before it is recorded. */
  readonly onMessage?: (message: events.SubscribeResponse) => void;
}

/** Opens `client.subscribe(request)` and consumes it in the background. */
export function collectStream(
  client: EventsClient,
  request: events.DeepPartial<events.SubscribeRequest>,
  options: CollectOptions = {},
): StreamCollector {
  const controller = new AbortController();
  const messages: events.SubscribeResponse[] = [];
  const changes: events.ChangeEvent[] = [];
  let lastPosition: string | undefined;
  let error: unknown;
  let ended = false;
  const done = (async () => {
    try {
      for await (const message of client.subscribe(request, { signal: controller.signal })) {
        options.onMessage?.(message);
        messages.push(message);
        const m = message.message;
        if (m?.$case === 'change') {
          changes.push(m.value);
          lastPosition = m.value.position;
        } else if (m?.$case === 'heartbeat' || m?.$case === 'snapshotEnd') {
          lastPosition = m.value.position;
        }
        if (
          (options.stopAfterChanges !== undefined && changes.length >= options.stopAfterChanges) ||
          (options.stopAfterSnapshotEnd && m?.$case === 'snapshotEnd') ||
          options.stopWhen?.(message, changes.length)
        ) {
          controller.abort();
          break;
        }
      }
    } catch (e) {
      if (!controller.signal.aborted) error = e;
    } finally {
      ended = true;
    }
  })();
  return {
    messages,
    changes,
    get lastPosition() {
      return lastPosition;
    },
    get error() {
      return error;
    },
    get ended() {
      return ended;
    },
    done,
    async stop() {
      controller.abort();
      await done;
    },
  };
}

/**
 * Polls `predicate` every `intervalMs` until it returns true.
 *
 * @throws Error naming `what` when it is still false after `timeoutMs`.
 */
export async function waitFor(
  predicate: () => boolean | Promise<boolean>,
  { timeoutMs = 10_000, intervalMs = 20, what = 'condition' } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export const sleepMs = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

let codec: PositionCodec | undefined;

/**
 * The (xid, change_log id) a position token of the test stack encodes; verifies its signature
 * with the secret the stack's events service derives from TEST_JWT_SECRET.
 */
export function decodePosition(token: string): Position {
  codec ??= new PositionCodec(
    loadEventsConfig({ DATABASE_URL: 'postgres://x@localhost/x', JWT_SECRET: TEST_JWT_SECRET })
      .positionSecret,
  );
  return codec.decode(token, 'position');
}

/** A proto Value as a plain JS value: strings, bigint for integers, null, numbers, booleans. */
export function plainValue(value: Value | undefined): unknown {
  const kind = value?.kind;
  if (!kind) return null;
  switch (kind.$case) {
    case 'nullValue':
      return null;
    case 'timestampValue':
      return `${kind.value.seconds}.${kind.value.nanos}`;
    case 'listValue':
      return kind.value.values.map(plainValue);
    default:
      return kind.value;
  }
}

/** A record (change event, snapshot row) as { column: plain value }. */
export function recordObject(
  columns: readonly { name: string }[],
  record: { values: Value[] } | undefined,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  columns.forEach((c, i) => {
    out[c.name] = plainValue(record?.values[i]);
  });
  return out;
}
