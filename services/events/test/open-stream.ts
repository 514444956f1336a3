import { setTimeout as delay } from 'node:timers/promises';
import { type events, type Filter, Operator, type Value } from '@sluice/proto';
import type { EventsClient } from './helpers';

// Helpers of the rls, filters-projection, slow-consumer, bad-input and shutdown tests.

/** Request shape as the client takes it. */
export type SubscribeReq = NonNullable<Parameters<EventsClient['subscribe']>[0]>;
export type TableReq = NonNullable<SubscribeReq['tables']>[number];

/** Builders for wire values and filters. */
export const V = {
  null: (): Value => ({ kind: undefined }),
  int: (n: bigint | number): Value => ({ kind: { $case: 'intValue', value: BigInt(n) } }),
  str: (s: string): Value => ({ kind: { $case: 'stringValue', value: s } }),
  bool: (b: boolean): Value => ({ kind: { $case: 'boolValue', value: b } }),
};

export function cond(column: string, op: Operator, value?: Value, values: Value[] = []): Filter {
  return { kind: { $case: 'condition', value: { column, op, value, values, textSearchConfig: '' } } };
}
export const eq = (column: string, value: Value): Filter => cond(column, Operator.OPERATOR_EQ, value);
export const and = (...filters: Filter[]): Filter => ({ kind: { $case: 'and', value: { filters } } });
export const or = (...filters: Filter[]): Filter => ({ kind: { $case: 'or', value: { filters } } });
export const not = (filter: Filter): Filter => ({ kind: { $case: 'not', value: filter } });

/** A wire value as plain JS: bigint, number, string, boolean, Buffer, Timestamp, JSON, arrays, null. */
export function plain(v: Value | undefined): unknown {
  const kind = v?.kind;
  if (!kind || kind.$case === 'nullValue') return null;
  if (kind.$case === 'listValue') return kind.value.values.map(plain);
  return kind.value;
}

/** An event's record (or old record) keyed by column name, with plain values; undefined when absent. */
export function recordOf(
  event: events.ChangeEvent | undefined,
  which: 'record' | 'oldRecord' = 'record',
): Record<string, unknown> | undefined {
  const row = event?.[which];
  if (!event || !row) return undefined;
  return Object.fromEntries(event.columns.map((c, i) => [c.name, plain(row.values[i])]));
}

/**
 * An open Subscribe stream read in the background: every message lands in `messages`, the
 * error that ended it in `error`. `waitFor` polls until a predicate holds.
 */
export class OpenStream {
  readonly messages: events.SubscribeResponse[] = [];
  error: unknown;
  ended = false;
  readonly done: Promise<void>;
  private readonly controller = new AbortController();

  constructor(client: EventsClient, request: SubscribeReq) {
    const stream = client.subscribe(request, { signal: this.controller.signal });
    this.done = (async () => {
      try {
        for await (const m of stream) this.messages.push(m);
      } catch (e) {
        this.error = e;
      } finally {
        this.ended = true;
      }
    })();
  }

  /** Change events received so far. */
  get changes(): events.ChangeEvent[] {
    return this.messages.flatMap((m) => (m.message?.$case === 'change' ? [m.message.value] : []));
  }

  get heartbeats(): events.Heartbeat[] {
    return this.messages.flatMap((m) => (m.message?.$case === 'heartbeat' ? [m.message.value] : []));
  }

  /** Waits until `predicate` holds (checked every 20 ms); throws after `timeoutMs` or if the stream ended first. */
  async waitFor(predicate: (s: this) => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (!predicate(this)) {
      if (this.ended) throw new Error(`stream ended before ${what}: ${String(this.error)}`);
      if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
      await delay(20);
    }
  }

  /** Waits for the first message (with a short heartbeat interval the stream is then live). */
  ready(timeoutMs = 10_000): Promise<void> {
    return this.waitFor((s) => s.messages.length > 0, timeoutMs, 'the first message');
  }

  /** Waits for a heartbeat received after the call, i.e. the feed has passed everything committed before it. */
  async settle(timeoutMs = 10_000): Promise<void> {
    const n = this.heartbeats.length;
    await this.waitFor((s) => s.heartbeats.length > n + 1, timeoutMs, 'heartbeats');
  }

  /** Cancels the call and waits for the reader to stop. */
  async cancel(): Promise<void> {
    this.controller.abort();
    await this.done;
  }
}

/**
 * Opens a stream and waits for its first message, retrying while the table is not yet known
 * (the service's catalog reloads shortly after DDL a test has just run).
 */
export async function openWhenKnown(client: EventsClient, request: SubscribeReq): Promise<OpenStream> {
  for (let attempt = 0; ; attempt++) {
    const s = new OpenStream(client, request);
    try {
      await s.ready();
      return s;
    } catch (error) {
      await s.cancel();
      if (attempt >= 50) throw error;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
