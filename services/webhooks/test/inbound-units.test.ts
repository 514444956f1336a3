import { describe, expect, it } from 'vitest';
import { isRawNumber, parseExactJson } from '../src/inbound/exact-json';
import { TokenBuckets } from '../src/inbound/rate-limit';

// The ingress's pure pieces: the per-source token bucket and the exact JSON parse.

describe('TokenBuckets', () => {
  it('lets a burst of twice the rate through, then refills at the rate', () => {
    const buckets = new TokenBuckets();
    const t0 = 1_000_000;
    const taken = Array.from({ length: 12 }, () => buckets.take('s', 5, t0));
    expect(taken.filter((w) => w === 0)).toHaveLength(10);
    expect(taken.slice(10)).toEqual([1, 1]);
    // 200 ms at 5/s: one token back.
    expect(buckets.take('s', 5, t0 + 200)).toBe(0);
    expect(buckets.take('s', 5, t0 + 200)).toBeGreaterThan(0);
    // Never more than the burst, however long it waited.
    const later = Array.from({ length: 11 }, () => buckets.take('s', 5, t0 + 3_600_000));
    expect(later.filter((w) => w === 0)).toHaveLength(10);
    // Sources do not share buckets.
    expect(buckets.take('other', 5, t0)).toBe(0);
  });

  it('says how many whole seconds until the next token', () => {
    const buckets = new TokenBuckets();
    expect([buckets.take('slow', 1, 0), buckets.take('slow', 1, 0)]).toEqual([0, 0]);
    expect(buckets.take('slow', 1, 0)).toBe(1);
    expect(buckets.take('slow', 1, 500)).toBe(1);
    expect(buckets.take('slow', 1, 1000)).toBe(0);
  });
});

describe('parseExactJson', () => {
  it('keeps every number as its source text and writes it back unchanged', () => {
    const text = '{"big":12345678901234567890,"dec":1.10,"exp":1e400,"list":[-0,2.50]}';
    const value = parseExactJson(text) as Record<string, unknown>;
    expect(isRawNumber(value.big)).toBe(true);
    expect((value.big as { rawJSON: string }).rawJSON).toBe('12345678901234567890');
    expect(JSON.stringify(value)).toBe(text);
  });
});
