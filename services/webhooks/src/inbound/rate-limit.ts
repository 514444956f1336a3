/**
 * Per-source token buckets, in process: a source may send `rate` requests per second on
 * average with bursts of up to twice that. Each instance limits on its own (a cluster of N
 * admits up to N times the rate): enough to keep one sender from starving the others here.
 *
 * The ingress looks (`wait`) before reading a body and charges (`charge`) only once the
 * signature verified: requests anyone can forge knowing a source's name must not use up its
 * budget. Requests admitted together may overshoot the burst by those in flight; the balance
 * then goes below zero and is paid back before the next is admitted, so the rate holds.
 */
export class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  /** 0 when `key` has a token now, else the whole seconds until it will (for Retry-After, at least 1). */
  wait(key: string, ratePerSecond: number, now = Date.now()): number {
    const bucket = this.refill(key, ratePerSecond, now);
    return bucket.tokens >= 1 ? 0 : Math.max(1, Math.ceil((1 - bucket.tokens) / ratePerSecond));
  }

  /** Takes one token from `key`'s bucket, going below zero if it must (never below minus its capacity). */
  charge(key: string, ratePerSecond: number, now = Date.now()): void {
    const bucket = this.refill(key, ratePerSecond, now);
    bucket.tokens = Math.max(-2 * ratePerSecond, bucket.tokens - 1);
  }

  /** Takes one token if there is one: `wait` and `charge` at once (0 when taken). */
  take(key: string, ratePerSecond: number, now = Date.now()): number {
    const wait = this.wait(key, ratePerSecond, now);
    if (wait === 0) this.charge(key, ratePerSecond, now);
    return wait;
  }

  private refill(key: string, ratePerSecond: number, now: number): { tokens: number; at: number } {
    const capacity = 2 * ratePerSecond;
    const bucket = this.buckets.get(key) ?? { tokens: capacity, at: now };
    bucket.tokens = Math.min(capacity, bucket.tokens + (Math.max(0, now - bucket.at) / 1000) * ratePerSecond);
    bucket.at = now;
    this.buckets.set(key, bucket);
    return bucket;
  }
}
