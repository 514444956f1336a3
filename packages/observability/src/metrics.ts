import { concurrencyLimitUsage } from '@sluice/core';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/**
 * The process's Prometheus metrics: one registry for every service the process runs (npm start
 * runs them all in one process and serves them on one ops listener). Labels are only bounded
 * values — service and method names from the proto, status codes, pool names — never a tenant,
 * user or table from a request.
 */
export const metrics = new Registry();
collectDefaultMetrics({ register: metrics });

/** RPCs started, by service and method (the go-grpc-prometheus names). */
export const grpcStarted = new Counter({
  name: 'grpc_server_started_total',
  help: 'RPCs started on the server.',
  labelNames: ['grpc_service', 'grpc_method', 'grpc_type'] as const,
  registers: [metrics],
});

/** RPCs finished, by service, method and status code. */
export const grpcHandled = new Counter({
  name: 'grpc_server_handled_total',
  help: 'RPCs completed on the server, whatever their status.',
  labelNames: ['grpc_service', 'grpc_method', 'grpc_type', 'grpc_code'] as const,
  registers: [metrics],
});

/** Time from the start of an RPC to its end (streams: the whole stream). */
export const grpcHandling = new Histogram({
  name: 'grpc_server_handling_seconds',
  help: 'Time to handle RPCs (for streams, until the stream ends).',
  labelNames: ['grpc_service', 'grpc_method', 'grpc_type'] as const,
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
  registers: [metrics],
});

/** What a pool reports (node-postgres' pg.Pool has these counters). */
export interface PoolLike {
  readonly totalCount: number;
  readonly idleCount: number;
  readonly waitingCount: number;
}

const pools = new Map<string, Set<PoolLike>>();

function poolGauge(name: string, help: string, read: (pool: PoolLike) => number) {
  return new Gauge({
    name,
    help,
    labelNames: ['pool'] as const,
    registers: [metrics],
    collect() {
      this.reset();
      for (const [label, set] of pools) {
        let sum = 0;
        for (const pool of set) sum += read(pool);
        this.set({ pool: label }, sum);
      }
    },
  });
}

poolGauge('db_pool_connections', 'Connections the pool holds (busy and idle).', (p) => p.totalCount);
poolGauge('db_pool_idle_connections', 'Idle connections in the pool.', (p) => p.idleCount);
poolGauge('db_pool_waiting_requests', 'Requests waiting for a connection.', (p) => p.waitingCount);

/**
 * Reports `pool` under the label `name` (e.g. the service) until the returned function is
 * called. Several pools of one name (tests, several instances in a process) are summed.
 */
export function registerPool(name: string, pool: PoolLike): () => void {
  let set = pools.get(name);
  if (!set) {
    set = new Set();
    pools.set(name, set);
  }
  set.add(pool);
  return () => {
    set.delete(pool);
    if (set.size === 0) pools.delete(name);
  };
}

/** What a circuit breaker reports (@sluice/db's ConnectionBreaker has these). */
export interface BreakerLike {
  readonly state: 'closed' | 'half-open' | 'open';
  /** Calls refused without trying since the breaker was made (only grows). */
  readonly rejected: number;
}

const BREAKER_STATE_VALUE = { closed: 0, 'half-open': 1, open: 2 } as const;
// By pool, weakly: a breaker whose pool is gone (a test that never closed it) is not kept.
const breakers = new WeakMap<PoolLike, Set<BreakerLike>>();
// Refusals of breakers already unregistered, by pool label, so the counter never goes down.
const retiredRejections = new Map<string, number>();

/** The registered pools' breakers, with the label of their pool. */
function* labelledBreakers(): Generator<[string, BreakerLike]> {
  for (const [label, set] of pools) {
    for (const pool of set) for (const breaker of breakers.get(pool) ?? []) yield [label, breaker];
  }
}

function labelOf(pool: PoolLike): string | undefined {
  for (const [label, set] of pools) if (set.has(pool)) return label;
  return undefined;
}

new Gauge({
  name: 'db_breaker_state',
  help: "State of the pool's circuit breaker: 0 closed, 1 half-open (one probe let through), 2 open (calls refused). Several pools of one name: the worst.",
  labelNames: ['pool'] as const,
  registers: [metrics],
  collect() {
    this.reset();
    const worst = new Map<string, number>();
    for (const [label, breaker] of labelledBreakers()) {
      worst.set(label, Math.max(worst.get(label) ?? 0, BREAKER_STATE_VALUE[breaker.state]));
    }
    for (const [label, value] of worst) this.set({ pool: label }, value);
  },
});

new Counter({
  name: 'db_breaker_rejected_total',
  help: "Calls the pool's circuit breaker refused at once (UNAVAILABLE, SLUICE_CIRCUIT_OPEN) instead of trying to connect.",
  labelNames: ['pool'] as const,
  registers: [metrics],
  collect() {
    this.reset();
    const totals = new Map(retiredRejections);
    for (const [label, breaker] of labelledBreakers()) {
      totals.set(label, (totals.get(label) ?? 0) + breaker.rejected);
    }
    for (const [label, total] of totals) this.inc({ pool: label }, total);
  },
});

/**
 * Reports `breaker`, the circuit breaker of `pool`, under the label `pool` is registered with
 * (registerPool) until the returned function is called. A breaker of a pool registered under no
 * name is not reported.
 */
export function registerBreaker(pool: PoolLike, breaker: BreakerLike): () => void {
  let set = breakers.get(pool);
  if (!set) {
    set = new Set();
    breakers.set(pool, set);
  }
  set.add(breaker);
  return () => {
    if (!set.delete(breaker)) return;
    if (set.size === 0) breakers.delete(pool);
    const label = labelOf(pool);
    if (label !== undefined)
      retiredRejections.set(label, (retiredRejections.get(label) ?? 0) + breaker.rejected);
  };
}

new Gauge({
  name: 'limit_in_use',
  help: 'Slots held of a per-identity concurrency limit (kind: streams and transactions, subscriptions, snapshots), summed over the services of the process.',
  labelNames: ['kind'] as const,
  registers: [metrics],
  collect() {
    this.reset();
    for (const usage of concurrencyLimitUsage()) this.set({ kind: usage.kind }, usage.inUse);
  },
});

new Counter({
  name: 'limit_refused_total',
  help: 'Calls refused by a concurrency limit (RESOURCE_EXHAUSTED): scope "identity" when the caller held its share (SLUICE_IDENTITY_LIMIT), "total" when every slot was taken (SLUICE_TOTAL_LIMIT).',
  labelNames: ['kind', 'scope'] as const,
  registers: [metrics],
  collect() {
    this.reset();
    for (const usage of concurrencyLimitUsage()) {
      this.inc({ kind: usage.kind, scope: 'identity' }, usage.refusedIdentity);
      this.inc({ kind: usage.kind, scope: 'total' }, usage.refusedTotal);
    }
  },
});
