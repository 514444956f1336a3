import type { Change, ChangeBatch } from '@sluice/changes';
import { describe, expect, it } from 'vitest';
import { OfferedBatches } from '../src/outbound/fanout';

// Review: the fan-out keeps the wake-up feed's batches to take instead of reading the log
// again. An instance whose fan-out another instance holds never takes them: they were kept by
// count of batches only (64 feed batches of up to 1,000 rows, each with its old version), held
// for as long as the instance ran. Now bounded by changes too.

const batch = (n: number, id: number): ChangeBatch => ({
  changes: Array.from({ length: n }, () => ({}) as Change),
  until: { window: 1n, id: BigInt(id) } as unknown as ChangeBatch['until'],
});

describe('review: offered feed batches', () => {
  it('hold at most maxChanges changes (the newest batches), never used ones for ever', () => {
    const offered = new OfferedBatches(64, 4_000);
    // A standby instance: 200 full feed batches arrive, none is taken.
    for (let i = 0; i < 200; i++) offered.offer(`1:${i * 1000}`, batch(1000, (i + 1) * 1000));
    expect(offered.changes).toBeLessThanOrEqual(4_000);
    // The newest are the ones kept.
    expect(offered.take(`1:${199 * 1000}`)?.changes).toHaveLength(1000);
    expect(offered.take('1:0')).toBeUndefined();
  });

  it('always keep the newest batch, even one larger than maxChanges, and at most maxBatches', () => {
    const offered = new OfferedBatches(3, 100);
    offered.offer('1:0', batch(500, 500));
    expect(offered.changes).toBe(500);
    for (let i = 1; i <= 10; i++) offered.offer(`1:${i}`, batch(1, i));
    expect(offered.changes).toBe(3);
    expect(offered.take('1:0')).toBeUndefined();
    expect(offered.take('1:10')?.changes).toHaveLength(1);
    expect(offered.changes).toBe(2);
  });

  it('a batch offered again at the same position replaces the first, counted once', () => {
    const offered = new OfferedBatches(64, 4_000);
    offered.offer('1:0', batch(10, 10));
    offered.offer('1:0', batch(20, 20));
    expect(offered.changes).toBe(20);
    expect(offered.take('1:0')?.changes).toHaveLength(20);
    expect(offered.changes).toBe(0);
  });
});
