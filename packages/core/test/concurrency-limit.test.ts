import { describe, expect, it } from 'vitest';
import { ConcurrencyLimit, concurrencyLimitUsage, type Identity, SluiceError } from '../src/index';

const who = (sub: string, role = 'authenticated'): Identity => ({
  role,
  claims: { sub },
  userId: sub,
  tenantId: undefined,
});

const usageOf = (kind: string) => concurrencyLimitUsage().find((u) => u.kind === kind);

describe('concurrencyLimitUsage', () => {
  it('reports slots in use and refusals per kind, over every limit of that kind', () => {
    const kind = `test kind ${Math.random()}`;
    const a = new ConcurrencyLimit({ kind, perIdentity: 1, total: 2 });
    const b = new ConcurrencyLimit({ kind, perIdentity: 5, total: 5 });
    expect(usageOf(kind)).toEqual({ kind, inUse: 0, refusedIdentity: 0, refusedTotal: 0 });

    const first = a.acquire(who('u1'));
    let refusedIdentity: unknown;
    try {
      a.acquire(who('u1'));
    } catch (e) {
      refusedIdentity = e;
    }
    expect(refusedIdentity).toBeInstanceOf(SluiceError);
    expect((refusedIdentity as SluiceError).reason).toBe('SLUICE_IDENTITY_LIMIT');
    const second = a.acquire(who('u2'));
    expect(() => a.acquire(who('u3'))).toThrow(/as many/);
    const other = b.acquire(who('u1'));
    expect(usageOf(kind)).toEqual({ kind, inUse: 3, refusedIdentity: 1, refusedTotal: 1 });

    // A slot that gave back its share of the total no longer counts as in use; release is idempotent.
    second.releaseTotal();
    expect(usageOf(kind)?.inUse).toBe(2);
    second.release();
    second.release();
    first.release();
    other.release();
    expect(usageOf(kind)).toEqual({ kind, inUse: 0, refusedIdentity: 1, refusedTotal: 1 });
  });
});
