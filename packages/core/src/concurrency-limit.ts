import type { Identity } from './context';
import { LimitReason, SluiceError } from './errors';

/**
 * Who counts as one caller for limits: the role and the token's `sub` claim. Every call
 * without a `sub` in a role is that role's one identity (all anonymous calls are one caller;
 * so are all service_role tokens without a `sub`).
 */
export function identityKey(identity: Identity): string {
  const sub = identity.claims.sub;
  return typeof sub === 'string' || typeof sub === 'number' ? `${identity.role}\u0000${sub}` : identity.role;
}

export interface ConcurrencyLimitOptions {
  /** What a slot stands for, as error metadata `kind` and in messages, e.g. `streams and transactions`. */
  readonly kind: string;
  /** Most slots one identity may hold at once. */
  readonly perIdentity: number;
  /** Most slots held at once by all callers together. */
  readonly total: number;
  /** Roles bounded by `total` only (trusted backends such as service_role). */
  readonly uncappedRoles?: readonly string[];
}

/** A held slot. `release` (or leaving a `using` block) gives it back; both are idempotent. */
export interface ConcurrencySlot extends Disposable {
  release(): void;
  /**
   * Gives back the slot's share of the total while it keeps counting for its identity: for work
   * that has let go of the shared resource but has not ended (a stalled stream whose connection
   * was released, waiting for its client to read the error).
   */
  releaseTotal(): void;
}

/**
 * Slots held and refusals of every ConcurrencyLimit of one `kind` in the process, for metrics
 * (@sluice/observability reads them when scraped: core does not depend on it). Kinds are fixed
 * strings from code, so the list stays short.
 */
export interface LimitUsage {
  readonly kind: string;
  /** Slots counting towards the total now. */
  readonly inUse: number;
  /** Acquires refused so far because the identity held its share (SLUICE_IDENTITY_LIMIT). */
  readonly refusedIdentity: number;
  /** Acquires refused so far because every slot was taken (SLUICE_TOTAL_LIMIT). */
  readonly refusedTotal: number;
}

const usageByKind = new Map<string, { inUse: number; refusedIdentity: number; refusedTotal: number }>();

/** Usage of every kind of ConcurrencyLimit made in this process so far (see LimitUsage). */
export function concurrencyLimitUsage(): LimitUsage[] {
  return [...usageByKind].map(([kind, u]) => ({ kind, ...u }));
}

/**
 * Caps concurrent work per identity and in total, so no single caller can take what all share
 * (pooled connections). `acquire` never waits: beyond a cap it throws RESOURCE_EXHAUSTED at once,
 * so a refused caller learns it in microseconds instead of after the pool's acquire timeout.
 */
export class ConcurrencyLimit {
  private readonly byIdentity = new Map<string, number>();
  private held = 0;
  private readonly uncapped: ReadonlySet<string>;
  private readonly usage: { inUse: number; refusedIdentity: number; refusedTotal: number };

  constructor(private readonly options: ConcurrencyLimitOptions) {
    if (!(options.perIdentity >= 1 && options.total >= 1)) {
      throw new RangeError(`ConcurrencyLimit needs limits >= 1: ${options.perIdentity}/${options.total}`);
    }
    this.uncapped = new Set(options.uncappedRoles ?? []);
    let usage = usageByKind.get(options.kind);
    if (!usage) {
      usage = { inUse: 0, refusedIdentity: 0, refusedTotal: 0 };
      usageByKind.set(options.kind, usage);
    }
    this.usage = usage;
  }

  /** Slots in use by everyone (counting towards the total), or by one identity. */
  inUse(identity?: Identity): number {
    return identity ? (this.byIdentity.get(identityKey(identity)) ?? 0) : this.held;
  }

  /**
   * Takes a slot for `identity`; release it in a `finally` (or hold it with `using`).
   *
   * @throws SluiceError RESOURCE_EXHAUSTED with reason SLUICE_IDENTITY_LIMIT when the identity
   *   holds its share, SLUICE_TOTAL_LIMIT when all slots are taken.
   */
  acquire(identity: Identity): ConcurrencySlot {
    const { kind, perIdentity, total } = this.options;
    const key = identityKey(identity);
    const mine = this.byIdentity.get(key) ?? 0;
    if (!this.uncapped.has(identity.role) && mine >= perIdentity) {
      this.usage.refusedIdentity++;
      throw new SluiceError(
        'RESOURCE_EXHAUSTED',
        `Too many concurrent ${kind} for this caller (at most ${perIdentity}); finish or cancel one first`,
        { reason: LimitReason.identityLimit, metadata: { kind, limit: String(perIdentity) } },
      );
    }
    if (this.held >= total) {
      this.usage.refusedTotal++;
      throw new SluiceError(
        'RESOURCE_EXHAUSTED',
        `The server is running as many ${kind} as it allows (${total}); retry with backoff`,
        { reason: LimitReason.totalLimit, metadata: { kind, limit: String(total) } },
      );
    }
    this.byIdentity.set(key, mine + 1);
    this.held++;
    this.usage.inUse++;
    let countsForTotal = true;
    let countsForIdentity = true;
    const releaseTotal = () => {
      if (!countsForTotal) return;
      countsForTotal = false;
      this.held--;
      this.usage.inUse--;
    };
    const release = () => {
      releaseTotal();
      if (!countsForIdentity) return;
      countsForIdentity = false;
      const left = (this.byIdentity.get(key) ?? 1) - 1;
      if (left > 0) this.byIdentity.set(key, left);
      else this.byIdentity.delete(key);
    };
    return { release, releaseTotal, [Symbol.dispose]: release };
  }
}
