/**
 * Per-source token buckets, in process: a source may send `rate` requests per second on
 * average with bursts of up to twice that. Each instance limits on its own (a cluster of N
 * admits up to N times the rate): enough to keep one sender from starving the others here.
 */
export class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  /**
   * Takes one token from `key`'s bucket. Returns 0 when taken, else the whole seconds until a
   * token will be there (for Retry-After, at least 1).
   */
  take(key: string, ratePerSecond: number, now = Date.now()): number {
    const capacity = 2 * ratePerSecond;
    const bucket = this.buckets.get(key) ?? { tokens: capacity, at: now };
    bucket.tokens = Math.min(capacity, bucket.tokens + ((now - bucket.at) / 1000) * ratePerSecond);
    bucket.at = now;
    this.buckets.set(key, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - bucket.tokens) / ratePerSecond));
  }
}
