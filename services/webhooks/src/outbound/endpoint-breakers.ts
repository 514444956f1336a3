/**
 * Per-endpoint circuit breakers of one worker process. After `failures` failed attempts in a row
 * an endpoint is open: its due deliveries are not claimed at all (they stay pending, deferred, not
 * attempted, not lost). After `resetMs` it is half-open: one delivery is let through as a probe;
 * its success closes the breaker, its failure opens it for another `resetMs`.
 *
 * Why not opossum (used for the database pool): opossum guards a call — it decides when the
 * call is made. Here the decision has to come before the claim: a delivery claimed and then
 * refused would have spent an attempt (and a lease) for nothing, and an open endpoint's
 * deliveries must not be claimed at all so other instances and endpoints are not held up. So
 * the breaker is consulted when building the claim (the open endpoints are excluded from it,
 * a half-open one may take one delivery) and told the outcome of each attempt; that needs only
 * the small state machine below, with no timers of its own.
 */
export type BreakerState = 'closed' | 'open' | 'half-open';

interface EndpointState {
  /** Failed attempts in a row. */
  failures: number;
  /** When it opened (or reopened); undefined while closed. */
  openedAt?: number;
  /** A half-open probe is in flight. */
  probing: boolean;
}

export class EndpointBreakers {
  readonly #failures: number;
  readonly #resetMs: number;
  readonly #now: () => number;
  readonly #states = new Map<string, EndpointState>();

  constructor(options: { failures: number; resetMs: number; now?: () => number }) {
    this.#failures = options.failures;
    this.#resetMs = options.resetMs;
    this.#now = options.now ?? Date.now;
  }

  state(endpointId: string): BreakerState {
    const s = this.#states.get(endpointId);
    if (s?.openedAt === undefined) return 'closed';
    return this.#now() - s.openedAt < this.#resetMs ? 'open' : 'half-open';
  }

  /**
   * Endpoints none of whose deliveries may be claimed now (open, or half-open with its probe in
   * flight), and those that may take exactly one (half-open, no probe yet).
   */
  gates(): { excluded: string[]; probes: string[] } {
    const excluded: string[] = [];
    const probes: string[] = [];
    for (const [id, s] of this.#states) {
      if (s.openedAt === undefined) continue;
      if (this.state(id) === 'open' || s.probing) excluded.push(id);
      else probes.push(id);
    }
    return { excluded, probes };
  }

  /** A delivery of this endpoint was claimed: when half-open, it is the probe (returns true). */
  claimed(endpointId: string): boolean {
    const s = this.#states.get(endpointId);
    if (!s || this.state(endpointId) !== 'half-open') return false;
    s.probing = true;
    return true;
  }

  /**
   * The probe's attempt ended. One that neither succeeded nor failed — refused by the SSRF
   * guard (not counted), abandoned, or broken — must still end the probe: while `probing` the
   * endpoint is excluded from every claim, so it would never be claimed again by this worker.
   */
  probeEnded(endpointId: string): void {
    const s = this.#states.get(endpointId);
    if (s) s.probing = false;
  }

  /** An attempt succeeded: the breaker closes. Returns the state it left. */
  succeeded(endpointId: string): BreakerState {
    const before = this.state(endpointId);
    this.#states.delete(endpointId);
    return before;
  }

  /** An attempt failed. Returns the new state when it (re)opened, else undefined. */
  failed(endpointId: string): 'open' | undefined {
    let s = this.#states.get(endpointId);
    if (!s) {
      s = { failures: 0, probing: false };
      this.#states.set(endpointId, s);
    }
    s.failures++;
    const halfOpen = this.state(endpointId) === 'half-open';
    if (halfOpen || (s.openedAt === undefined && s.failures >= this.#failures)) {
      s.openedAt = this.#now();
      s.probing = false;
      return 'open';
    }
    return undefined;
  }

  /** Endpoints open or half-open now (the gauge). */
  openCount(): number {
    let n = 0;
    for (const s of this.#states.values()) if (s.openedAt !== undefined) n++;
    return n;
  }

  /** Forgets an endpoint (e.g. disabled): nothing of it is claimed anyway. */
  forget(endpointId: string): void {
    this.#states.delete(endpointId);
  }
}
