import type { OutboundSettings } from '../config';

export type RetrySettings = Pick<
  OutboundSettings,
  'retryScheduleMs' | 'retryJitter' | 'minRetryAfterTimeoutMs' | 'maxRetryAfterMs'
>;

export interface FailedAttempt {
  /** Attempts made so far, this one included (1 after the first). */
  readonly attempts: number;
  /** The attempt timed out, or the endpoint answered 429: it is overloaded. */
  readonly overloaded: boolean;
  /** The endpoint's Retry-After, in ms from now, when it sent one. */
  readonly retryAfterMs?: number;
}

/**
 * How long to wait before the next attempt after a failed one, or undefined when the schedule is
 * exhausted (the delivery fails). The first attempt is immediate; after attempt n the delay is
 * retryScheduleMs[n-1] moved by up to ±retryJitter (uniformly; `random` in [0, 1)), at least
 * minRetryAfterTimeoutMs after a timeout or a 429, and never shorter than the endpoint's
 * Retry-After, which is honoured up to maxRetryAfterMs (a longer one is cut to that).
 */
export function retryDelayMs(
  attempt: FailedAttempt,
  settings: RetrySettings,
  random: () => number = Math.random,
): number | undefined {
  const base = settings.retryScheduleMs[attempt.attempts - 1];
  if (base === undefined) return undefined;
  let delay = base * (1 + settings.retryJitter * (2 * random() - 1));
  if (attempt.overloaded) delay = Math.max(delay, settings.minRetryAfterTimeoutMs);
  if (attempt.retryAfterMs !== undefined)
    delay = Math.max(delay, Math.min(attempt.retryAfterMs, settings.maxRetryAfterMs));
  return Math.max(0, Math.round(delay));
}

/**
 * A Retry-After header value in ms from `now`: delay-seconds or an HTTP date; undefined when
 * absent or unreadable. A date in the past is 0.
 */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  // An HTTP date names its day and month; Date.parse would also take "-5" for a year.
  if (!/^[A-Za-z]{3}/.test(text)) return undefined;
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}
