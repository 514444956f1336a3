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
