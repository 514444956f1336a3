import { describe, expect, it } from 'vitest';
import { Backoff, retry, SluiceError } from '../src/index';

describe('Backoff', () => {
  it('draws each delay from [0, ceiling], the ceiling doubling up to the cap', () => {
    const top = new Backoff({ initialMs: 100, maxMs: 1_000, random: () => 0.999_999 });
    expect(Array.from({ length: 6 }, () => top.next())).toEqual([100, 200, 400, 800, 1000, 1000]);
    const bottom = new Backoff({ initialMs: 100, maxMs: 1_000, random: () => 0 });
    expect(Array.from({ length: 3 }, () => bottom.next())).toEqual([0, 0, 0]);
    expect(bottom.attempts).toBe(3);
  });

  it('starts over after reset, and never overflows', () => {
    const b = new Backoff({ initialMs: 50, maxMs: 60_000, random: () => 0.5 });
    for (let i = 0; i < 2_000; i++) expect(Number.isFinite(b.next())).toBe(true);
    expect(b.ceiling).toBe(60_000);
    b.reset();
    expect(b.ceiling).toBe(50);
    expect(b.next()).toBe(25);
  });

  it('spreads delays over the whole range (full jitter)', () => {
    const b = new Backoff({ initialMs: 1_000, maxMs: 1_000 });
    const delays = Array.from({ length: 2_000 }, () => b.next());
    expect(Math.min(...delays)).toBeLessThan(100);
    expect(Math.max(...delays)).toBeGreaterThan(900);
    const mean = delays.reduce((a, d) => a + d, 0) / delays.length;
    expect(mean).toBeGreaterThan(400);
    expect(mean).toBeLessThan(600);
  });
});

describe('retry', () => {
  const transient = new Error('not now');
  const fatal = new Error('no');

  it('retries retryable errors up to the attempts, then throws the last', async () => {
    const seen: number[] = [];
    const retried: number[] = [];
    await expect(
      retry(
        async (attempt) => {
          seen.push(attempt);
          throw transient;
        },
        {
          attempts: 3,
          initialMs: 1,
          maxMs: 2,
          retryable: (e) => e === transient,
          onRetry: (_e, attempt) => retried.push(attempt),
        },
      ),
    ).rejects.toBe(transient);
    expect(seen).toEqual([1, 2, 3]);
    expect(retried).toEqual([1, 2]);
  });

  it('returns the first success and never retries what is not retryable', async () => {
    let calls = 0;
    expect(
      await retry(
        async () => {
          if (++calls < 2) throw transient;
          return 'ok';
        },
        { initialMs: 1, retryable: () => true },
      ),
    ).toBe('ok');
    expect(calls).toBe(2);

    calls = 0;
    await expect(
      retry(
        async () => {
          calls++;
          throw fatal;
        },
        { attempts: 5, initialMs: 1, retryable: (e) => e === transient },
      ),
    ).rejects.toBe(fatal);
    expect(calls).toBe(1);
  });

  it('stops waiting when the signal aborts, with the abort error', async () => {
    const controller = new AbortController();
    const started = performance.now();
    const pending = retry(
      async () => {
        throw transient;
      },
      {
        attempts: 10,
        initialMs: 10_000,
        maxMs: 10_000,
        random: () => 1,
        retryable: () => true,
        signal: controller.signal,
      },
    );
    setTimeout(() => controller.abort(), 20);
    const error = await pending.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SluiceError);
    expect((error as SluiceError).code).toBe('CANCELLED');
    expect(performance.now() - started).toBeLessThan(5_000);

    let calls = 0;
    await expect(
      retry(
        async () => {
          calls++;
        },
        { retryable: () => true, signal: AbortSignal.abort() },
      ),
    ).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(calls).toBe(0);
  });
});
