// `npm run bench [-- part…]`: runs the benchmark parts (all by default), each printing its own
// table, then prints exactly one line of JSON merging every part's figures, always last, so runs
// can be compared by machine. Benchmarks never fail a build: missed targets only print MISSED.
import { runDataBench } from './data';
import { runEventsBench } from './events';
import { runWebhooksBench } from './webhooks';

type Part = () => Promise<Record<string, number>>;

const env = process.env;
const seconds = (name: string, fallback: number) => {
  const value = Number(env[name] ?? fallback);
  return Number.isFinite(value) && value > 0 ? value : fallback;
};

const PARTS: Record<string, Part> = {
  data: () =>
    runDataBench({
      adminUrl: env.SLUICE_BENCH_DATABASE_URL || env.DATABASE_URL || undefined,
      concurrency: Math.floor(seconds('BENCH_CONCURRENCY', 64)),
      warmupSeconds: seconds('BENCH_WARMUP_SECONDS', 2),
      measureSeconds: seconds('BENCH_SECONDS', 12),
      rounds: Math.floor(seconds('BENCH_ROUNDS', 6)),
      inProcess: env.BENCH_IN_PROCESS === '1',
      serverNodeFlags: (env.BENCH_SERVER_NODE_FLAGS ?? '').split(/\s+/).filter(Boolean),
      only: (env.BENCH_CASES ?? '').split(',').filter(Boolean),
      serverEnv: {
        ...(env.DB_POOL_MAX ? { DB_POOL_MAX: env.DB_POOL_MAX } : {}),
        ...(env.BENCH_LOG_LEVEL ? { LOG_LEVEL: env.BENCH_LOG_LEVEL } : {}),
      },
    }),
  events: () =>
    runEventsBench({
      adminUrl: env.SLUICE_BENCH_DATABASE_URL || env.DATABASE_URL || undefined,
      latencySeconds: seconds('BENCH_LATENCY_SECONDS', 10),
      fanoutSeconds: seconds('BENCH_FANOUT_SECONDS', 60),
      fanoutRate: seconds('BENCH_FANOUT_RATE', 250),
      latencyRate: seconds('BENCH_LATENCY_RATE', 200),
      // 0 skips the stretch step.
      stretchSeconds: env.BENCH_STRETCH_SECONDS === '0' ? 0 : seconds('BENCH_STRETCH_SECONDS', 15),
      stretchRate: seconds('BENCH_STRETCH_RATE', 500),
      drainSeconds: seconds('BENCH_DRAIN_SECONDS', 5),
      warmupSeconds: env.BENCH_WARMUP_SECONDS === '0' ? 0 : seconds('BENCH_WARMUP_SECONDS', 3),
      captureSeconds: seconds('BENCH_CAPTURE_SECONDS', 5),
      serverNodeFlags: (env.BENCH_EVENTS_NODE_FLAGS ?? '').split(/\s+/).filter(Boolean),
      only: (env.BENCH_EVENTS_STEPS ?? '').split(',').filter(Boolean),
      serverEnv: {
        ...(env.DB_POOL_MAX ? { DB_POOL_MAX: env.DB_POOL_MAX } : {}),
        ...(env.BENCH_LOG_LEVEL ? { LOG_LEVEL: env.BENCH_LOG_LEVEL } : {}),
        ...(env.EVENTS_POLL_INTERVAL_MS ? { EVENTS_POLL_INTERVAL_MS: env.EVENTS_POLL_INTERVAL_MS } : {}),
        ...(env.EVENTS_BATCH_SIZE ? { EVENTS_BATCH_SIZE: env.EVENTS_BATCH_SIZE } : {}),
      },
    }),
  webhooks: () =>
    runWebhooksBench({
      adminUrl: env.SLUICE_BENCH_DATABASE_URL || env.DATABASE_URL || undefined,
      concurrency: Math.floor(seconds('BENCH_CONCURRENCY', 64)),
      warmupSeconds: seconds('BENCH_WARMUP_SECONDS', 2),
      measureSeconds: seconds('BENCH_WEBHOOKS_SECONDS', 8),
      rounds: Math.floor(seconds('BENCH_ROUNDS', 3)),
      endpoints: Math.floor(seconds('BENCH_WEBHOOKS_ENDPOINTS', 100)),
      outboundRate: seconds('BENCH_WEBHOOKS_RATE', 1000),
      outboundSeconds: seconds('BENCH_WEBHOOKS_OUTBOUND_SECONDS', 60),
      outboundWarmupSeconds: seconds('BENCH_WEBHOOKS_OUTBOUND_WARMUP_SECONDS', 5),
      deadEndpoint: env.BENCH_WEBHOOKS_DEAD_ENDPOINT !== '0',
      drainSeconds: seconds('BENCH_DRAIN_SECONDS', 90),
      serverNodeFlags: (env.BENCH_WEBHOOKS_NODE_FLAGS ?? '').split(/\s+/).filter(Boolean),
      only: (env.BENCH_WEBHOOKS_STEPS ?? '').split(',').filter(Boolean),
      serverEnv: {
        ...(env.DB_POOL_MAX ? { DB_POOL_MAX: env.DB_POOL_MAX } : {}),
        ...(env.BENCH_LOG_LEVEL ? { LOG_LEVEL: env.BENCH_LOG_LEVEL } : {}),
        // Any WEBHOOKS_* setting given to the bench goes to the service (over the bench's own).
        ...Object.fromEntries(
          Object.entries(env).filter((e): e is [string, string] => e[0].startsWith('WEBHOOKS_') && !!e[1]),
        ),
      },
    }),
};

const requested = process.argv.slice(2).filter((arg) => arg !== '--');
const unknown = requested.filter((name) => !(name in PARTS));
if (unknown.length > 0) {
  console.error(`unknown benchmark part(s): ${unknown.join(', ')}; known: ${Object.keys(PARTS).join(', ')}`);
  process.exit(2);
}

const results: Record<string, Record<string, number>> = {};
for (const name of requested.length > 0 ? requested : Object.keys(PARTS)) {
  console.log(`\n== ${name} ==`);
  const part = PARTS[name];
  if (part) results[name] = await part();
}
console.log(JSON.stringify(results));
