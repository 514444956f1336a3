import {
  context,
  isSpanContextValid,
  type Link,
  ROOT_CONTEXT,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  trace,
} from '@opentelemetry/api';
import type { Change, ChangeBatch } from './read-changes';

/** Most writer links one span carries (the SDK's default limit is 128). */
export const MAX_WRITER_LINKS = 32;

const TRACEPARENT_RE = /^00-([\da-f]{32})-([\da-f]{16})-([\da-f]{2})$/;
const contexts = new WeakMap<Change, SpanContext | null>();

/** The writer's span context a change carries (its traceparent), or undefined. Parsed once per change. */
export function writerSpanContext(change: Change): SpanContext | undefined {
  let sc = contexts.get(change);
  if (sc === undefined) {
    const m = change.traceparent ? TRACEPARENT_RE.exec(change.traceparent) : null;
    sc = m
      ? {
          traceId: m[1] as string,
          spanId: m[2] as string,
          traceFlags: Number.parseInt(m[3] as string, 16),
          isRemote: true,
        }
      : null;
    if (sc && !isSpanContextValid(sc)) sc = null;
    contexts.set(change, sc);
  }
  return sc ?? undefined;
}

/**
 * Span links to the distinct writers of `changes`, sampled writers first, at most `max`: the
 * way from a change's delivery back to the write that caused it.
 */
export function writerLinks(changes: Iterable<Change>, max = MAX_WRITER_LINKS): Link[] {
  const sampled: Link[] = [];
  const other: Link[] = [];
  const seen = new Set<string>();
  for (const change of changes) {
    const sc = writerSpanContext(change);
    if (!sc || seen.has(sc.spanId)) continue;
    seen.add(sc.spanId);
    ((sc.traceFlags & TraceFlags.SAMPLED) !== 0 ? sampled : other).push({ context: sc });
    if (sampled.length >= max) break;
  }
  return [...sampled, ...other].slice(0, max);
}

/**
 * Runs `deliver` (the feed's listeners) inside a span for the batch: a root CONSUMER span that
 * starts when the read started, carries the change count and links to the writers. It is made
 * only for batches with changes (empty reads are the feed's idle loop) and after the read,
 * so that its links are known when it is sampled: a batch holding a sampled write is traced
 * whatever the ratio (the process's sampler samples a root span linked to a sampled one).
 * Everything the listeners do (visibility checks, deliveries) is its child. Without a tracer
 * provider this costs a no-op span per batch.
 */
export async function inBatchSpan(
  batch: ChangeBatch,
  startTime: number,
  deliver: () => Promise<void>,
): Promise<void> {
  if (batch.changes.length === 0) return deliver();
  const span = trace.getTracer('@sluice/changes').startSpan(
    'sluice.changes.batch',
    {
      kind: SpanKind.CONSUMER,
      root: true,
      startTime,
      links: writerLinks(batch.changes),
      attributes: { 'sluice.changes.count': batch.changes.length },
    },
    ROOT_CONTEXT,
  );
  try {
    await context.with(trace.setSpan(ROOT_CONTEXT, span), deliver);
  } catch (error) {
    span.setStatus({ code: SpanStatusCode.ERROR });
    throw error;
  } finally {
    span.end();
  }
}
