import { type AbortOptions, sleep, throwIfAborted } from './abort';

/** Exponential backoff: the n-th delay (from 0) is drawn from [0, min(maxMs, initialMs·2ⁿ)]. */
export interface BackoffOptions {
  /** Ceiling of the first delay (default 100 ms). */
  readonly initialMs?: number;
  /** Ceiling of any delay (default 5 s). */
  readonly maxMs?: number;
  /** Source of randomness in [0, 1) (tests pass a fixed one). */
  readonly random?: () => number;
}

/**
 * Delays for retrying with exponential backoff and full jitter ("Exponential Backoff And
 * Jitter", AWS Architecture Blog): each delay is uniform in [0, ceiling], the ceiling doubling
 * per attempt up to `maxMs`. Full jitter spreads the retries of many clients that failed
 * together (every instance losing its database at once) instead of letting them return in
 * waves, and its mean (half the ceiling) keeps a lone client quick.
 */
export class Backoff {
  readonly #initial: number;
  readonly #max: number;
  readonly #random: () => number;
  #attempt = 0;

  constructor(options: BackoffOptions = {}) {
    this.#initial = Math.max(1, options.initialMs ?? 100);
    this.#max = Math.max(this.#initial, options.maxMs ?? 5_000);
    this.#random = options.random ?? Math.random;
  }

  /** Delays handed out since the last reset. */
  get attempts(): number {
    return this.#attempt;
  }

  /** The ceiling the next delay is drawn under. */
  get ceiling(): number {
    // 2^30 already exceeds any sensible cap; stop the exponent from overflowing to Infinity.
    return Math.min(this.#max, this.#initial * 2 ** Math.min(this.#attempt, 30));
  }

  /** The next delay in ms (a whole number), raising the ceiling for the one after. */
  next(): number {
    const delay = Math.floor(this.#random() * (this.ceiling + 1));
    this.#attempt++;
    return delay;
  }

  /** Starts over at `initialMs` (after a success). */
  reset(): void {
    this.#attempt = 0;
  }
}

export interface RetryOptions extends BackoffOptions, AbortOptions {
  /** Tries in all, the first included (default 3). */
  readonly attempts?: number;
  /**
   * Whether `error` (from try number `attempt`, from 1) may be retried. Only errors after which
   * running `fn` again cannot repeat an effect: a failed connection attempt, a read. Never a
   * write that may have committed.
   */
  readonly retryable: (error: unknown, attempt: number) => boolean;
  /** Called before each wait (for a log line). */
  readonly onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
}

/**
 * Runs `fn` until it succeeds, `options.retryable` says no, or `attempts` tries are used,
 * waiting a Backoff delay between tries. `fn` gets the try number (from 1).
 *
 * @throws the last error of `fn`; the abort error (CANCELLED / DEADLINE_EXCEEDED) when
 *   `signal` aborts before a try or during a wait (a try already running is `fn`'s to cancel).
 */
export async function retry<T>(fn: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  const attempts = Math.max(1, options.attempts ?? 3);
  const backoff = new Backoff(options);
  const { signal } = options;
  for (let attempt = 1; ; attempt++) {
    throwIfAborted(signal);
    try {
      return await fn(attempt);
    } catch (error) {
      if (attempt >= attempts || !options.retryable(error, attempt)) throw error;
      const delay = backoff.next();
      options.onRetry?.(error, attempt, delay);
      await sleep(delay, signal ? { signal } : {});
    }
  }
}
