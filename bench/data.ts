import { signToken } from '@sluice/auth';
import { type DataServer, loadDataConfig, startDataServer } from '@sluice/data-service';
import { data, Operator, type Value } from '@sluice/proto';
import { createChannel, createClient, Metadata } from 'nice-grpc';
import { HealthDefinition } from 'nice-grpc-server-health';
import pg from 'pg';
import { createBenchDatabase, withClient } from './bench-database';
import { startChildServer } from './child-server';
import { type LoadResult, type LoadSample, runClosedLoop, summarize } from './load';
import { startScraper, startTelemetrySink } from './telemetry-sinks';

export interface DataBenchOptions {
  /** Superuser URL of a PostgreSQL to use; an embedded one in a temp folder when undefined. */
  readonly adminUrl: string | undefined;
  readonly concurrency: number;
  readonly warmupSeconds: number;
  readonly measureSeconds: number;
  /**
   * The measured time of each case is split into this many rounds, the cases taking turns, so a
   * burst of load from elsewhere on the machine spreads over all cases instead of skewing one.
   */
  readonly rounds: number;
  /** Run the service in the benchmark's own process instead of a child process. */
  readonly inProcess: boolean;
  /** Extra node flags for the service's child process (e.g. --cpu-prof --cpu-prof-dir=/tmp/prof). */
  readonly serverNodeFlags: readonly string[];
  /** Extra environment for the service (DB_POOL_MAX, …); LOG_LEVEL defaults to silent. */
  readonly serverEnv: Readonly<Record<string, string>>;
  /**
   * Only these cases (floor, rls_pk, service_pk, rls_list, pg_direct, plain_pk, observed_pk);
   * all when empty.
   */
  readonly only: readonly string[];
}

const JWT_SECRET = 'bench-secret-that-is-long-enough-for-hs256!';
const ALICE = 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa'; // admin of Acme (db/seed.sql)
const ACME = '11111111-1111-1111-1111-111111111111';
const PK = 1n; // an Acme post alice can read
const EXTRA_POSTS = 200;
const COLUMNS = ['id', 'tenant_id', 'author_id', 'title', 'status', 'view_count', 'created_at'];
const RLS_TARGET = 0.6;
const OBSERVED_TARGET = 0.9;
// Observability on: 10 % of traces sampled, Prometheus scraping every second.
const TRACE_RATIO = '0.1';
const SCRAPE_INTERVAL_MS = 1_000;
const SERVING = 1; // grpc.health.v1 HealthCheckResponse.ServingStatus.SERVING

const DEFAULTS: DataBenchOptions = {
  adminUrl: undefined,
  concurrency: 64,
  warmupSeconds: 2,
  measureSeconds: 12,
  rounds: 6,
  inProcess: false,
  serverNodeFlags: [],
  serverEnv: {},
  only: [],
};

interface Case {
  readonly key: string;
  readonly label: string;
  readonly call: () => Promise<unknown>;
}

/**
 * The data service benchmark of issue 2: a closed loop of `concurrency` calls against (a) the
 * gRPC health check on the same server (transport floor), (b) Select by primary key as alice under
 * RLS, (c) the same as service_role, (d) a 20-row tenant list under RLS, (e) that list query
 * straight through node-postgres as superuser. Prints a table and returns every figure, keyed as
 * in the final JSON line (`floor_qps`, `rls_pk_p99_ms`, `rls_pk_over_floor`, …).
 *
 * Starts and stops everything it needs (PostgreSQL, the service, pools, channels).
 * @throws only when the stack cannot be set up; failing calls are counted, not thrown.
 */
export async function runDataBench(
  overrides: Partial<DataBenchOptions> = {},
): Promise<Record<string, number>> {
  const options = { ...DEFAULTS, ...overrides };
  const setupStarted = performance.now();
  const db = await createBenchDatabase(options.adminUrl);
  const cleanups: (() => Promise<unknown>)[] = [() => db.close()];
  try {
    await seedBenchPosts(db.url);
    const serverEnv: Record<string, string> = {
      LOG_LEVEL: 'silent',
      ...options.serverEnv,
      DATABASE_URL: db.appUrl,
      DATA_GRPC_ADDRESS: '127.0.0.1:0',
      JWT_SECRET,
      SHUTDOWN_GRACE_MS: '2000',
    };
    const server = options.inProcess
      ? await startInProcess(serverEnv)
      : await startChild(serverEnv, options.serverNodeFlags);
    cleanups.unshift(() => server.close());

    // observed_over_plain: two more services alike but for observability, both logging a line
    // per call at info (discarded, as a log shipper would take stdout): "plain" with nothing
    // else; "observed" shipping every line to a local Loki, sampling 10 % of traces to a local
    // OTLP/HTTP collector, its /metrics scraped every second.
    const wantsObserved = ['plain_pk', 'observed_pk'].some(
      (key) => options.only.length === 0 || options.only.includes(key),
    );
    const loki = wantsObserved ? await startTelemetrySink(204) : undefined;
    const otlp = wantsObserved ? await startTelemetrySink(200) : undefined;
    if (loki) cleanups.unshift(() => loki.close());
    if (otlp) cleanups.unshift(() => otlp.close());
    const plainEnv = { ...serverEnv, LOG_LEVEL: 'info' };
    const plain = wantsObserved
      ? await startChildServer('data', plainEnv, options.serverNodeFlags, { quiet: true })
      : undefined;
    if (plain) cleanups.unshift(() => plain.close());
    const observed =
      loki && otlp
        ? await startChildServer(
            'data',
            {
              ...plainEnv,
              LOKI_URL: loki.url,
              OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
              OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
              OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
              OTEL_TRACES_SAMPLER_ARG: TRACE_RATIO,
              OPS_HTTP_ADDRESS: '127.0.0.1:0',
            },
            options.serverNodeFlags,
            { quiet: true },
          )
        : undefined;
    if (observed) cleanups.unshift(() => observed.close());
    const scraper = observed
      ? startScraper(`http://127.0.0.1:${observed.opsPort}/metrics`, SCRAPE_INTERVAL_MS)
      : undefined;
    if (scraper) cleanups.unshift(async () => scraper.stop());

    const channel = createChannel(`127.0.0.1:${server.port}`);
    cleanups.unshift(async () => channel.close());
    const bearer = async (claims: Record<string, unknown>) =>
      Metadata({ authorization: `Bearer ${await signToken(JWT_SECRET, claims, { expiresIn: 3600 })}` });
    const aliceMeta = await bearer({ sub: ALICE, role: 'authenticated' });
    const serviceMeta = await bearer({ role: 'service_role' });
    const dataClient = createClient(data.DataServiceDefinition, channel);
    const health = createClient(HealthDefinition, channel);
    const clientOf = (target: RunningServer | undefined) => {
      if (!target) return undefined;
      const ch = createChannel(`127.0.0.1:${target.port}`);
      cleanups.unshift(async () => ch.close());
      return createClient(data.DataServiceDefinition, ch);
    };
    const plainClient = clientOf(plain);
    const observedClient = clientOf(observed);

    const direct = new pg.Pool({ connectionString: db.url, max: server.poolMax });
    direct.on('error', () => {});
    cleanups.unshift(() => direct.end());
    const directSql = `select ${COLUMNS.join(', ')} from public.posts where tenant_id = $1 order by id limit 20`;

    const byPk: data.SelectRequest = data.SelectRequest.fromPartial({
      table: 'posts',
      columns: COLUMNS,
      filter: condition('id', { $case: 'intValue', value: PK }),
    });
    const list: data.SelectRequest = data.SelectRequest.fromPartial({
      table: 'posts',
      columns: COLUMNS,
      filter: condition('tenant_id', { $case: 'stringValue', value: ACME }),
      order: [{ column: 'id' }],
      limit: 20,
    });

    const cases: Case[] = [
      {
        key: 'floor',
        label: '(a) grpc.health.v1 Check (transport floor)',
        call: () => health.check({ service: '' }, { metadata: aliceMeta }),
      },
      {
        key: 'rls_pk',
        label: '(b) Select post by pk, alice under RLS',
        call: () => dataClient.select(byPk, { metadata: aliceMeta }),
      },
      {
        key: 'service_pk',
        label: '(c) Select post by pk, service_role',
        call: () => dataClient.select(byPk, { metadata: serviceMeta }),
      },
      {
        key: 'rls_list',
        label: '(d) Select 20 posts of Acme, alice under RLS',
        call: () => dataClient.select(list, { metadata: aliceMeta }),
      },
      {
        key: 'pg_direct',
        label: '(e) same list, node-postgres direct (superuser, NO RLS)',
        call: () => direct.query(directSql, [ACME]),
      },
    ];
    if (plainClient && observedClient) {
      cases.push(
        {
          key: 'plain_pk',
          label: '(f) as (b), LOG_LEVEL=info to stdout, nothing else',
          call: () => plainClient.select(byPk, { metadata: aliceMeta }),
        },
        {
          key: 'observed_pk',
          label: '(g) as (f) + Loki + 10 % traces (OTLP) + /metrics scraped 1/s',
          call: () => observedClient.select(byPk, { metadata: aliceMeta }),
        },
      );
      await expectRows('plain_pk', plainClient.select(byPk, { metadata: aliceMeta }).then(rowCount), 1);
      await expectRows('observed_pk', observedClient.select(byPk, { metadata: aliceMeta }).then(rowCount), 1);
    }

    // Each case must return what it claims before it is timed.
    await expectRows(
      'floor',
      health.check({ service: '' }).then((r) => (r.status === SERVING ? 1 : 0)),
      1,
    );
    await expectRows('rls_pk', dataClient.select(byPk, { metadata: aliceMeta }).then(rowCount), 1);
    await expectRows('service_pk', dataClient.select(byPk, { metadata: serviceMeta }).then(rowCount), 1);
    await expectRows('rls_list', dataClient.select(list, { metadata: aliceMeta }).then(rowCount), 20);
    await expectRows(
      'pg_direct',
      direct.query(directSql, [ACME]).then((r) => r.rowCount ?? 0),
      20,
    );

    const setupSeconds = (performance.now() - setupStarted) / 1000;
    console.log(
      `data: ${db.where}; service ${options.inProcess ? 'in this process' : 'in a child process'}, ` +
        `LOG_LEVEL=${serverEnv.LOG_LEVEL} (a log line per call would measure stdout, not the service); ` +
        `pool max ${server.poolMax}; ${options.concurrency} concurrent calls (closed loop); ` +
        `${options.warmupSeconds}s warm-up + ${options.measureSeconds}s per case in ${options.rounds} interleaved rounds; setup ${setupSeconds.toFixed(1)}s`,
    );

    const selected = cases.filter((c) => options.only.length === 0 || options.only.includes(c.key));
    const samples = new Map<string, LoadSample[]>(selected.map((c) => [c.key, []]));
    const rounds = Math.max(1, Math.floor(options.rounds));
    for (let round = 0; round < rounds; round++) {
      // Every other round runs the cases in reverse (A B … B A): a machine getting busier or
      // quieter during the run then weighs on each case alike, so ratios of neighbours (g/f)
      // keep little of the drift.
      for (const c of round % 2 === 0 ? selected : [...selected].reverse()) {
        const sample = await runClosedLoop(c.call, {
          concurrency: options.concurrency,
          // A full warm-up before a case's first round; later rounds only refill the loop.
          warmupMs: round === 0 ? options.warmupSeconds * 1000 : 250,
          measureMs: (options.measureSeconds * 1000) / rounds,
        });
        samples.get(c.key)?.push(sample);
      }
    }
    const results = new Map<string, LoadResult>();
    for (const c of selected) {
      const result = summarize(samples.get(c.key) ?? []);
      results.set(c.key, result);
      if (result.errors > 0)
        console.log(`  ${c.key}: ${result.errors} failed calls, first: ${String(result.firstError)}`);
    }

    const figures = report(selected, results, server.poolMax, options.concurrency);
    const perRound = roundRatios(samples.get('observed_pk'), samples.get('plain_pk'));
    if (perRound.length > 0) {
      // The same ratio round by round (f and g run next to each other in every round): its spread
      // shows how much of the run-to-run variation is the machine rather than the service.
      const sorted = [...perRound].sort((a, b) => a - b);
      const median = sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
      console.log(
        `  g/f per round: ${perRound.map((r) => r.toFixed(2)).join(' ')} (median ${median.toFixed(3)})`,
      );
      figures.observed_over_plain_round_median = round(median, 3);
    }
    if (loki && otlp && scraper) {
      // Proof that the observed service really shipped while it was measured.
      console.log(
        `  observed: ${loki.requests} Loki pushes (${(loki.bytes / 1e6).toFixed(1)} MB), ` +
          `${otlp.requests} OTLP exports (${(otlp.bytes / 1e6).toFixed(1)} MB), ${scraper.scrapes} scrapes`,
      );
      figures.observed_loki_pushes = loki.requests;
      figures.observed_otlp_exports = otlp.requests;
      figures.observed_scrapes = scraper.scrapes;
    }
    return figures;
  } finally {
    for (const cleanup of cleanups) {
      await cleanup().catch((error: unknown) => console.error(`data bench cleanup: ${String(error)}`));
    }
  }
}

function report(
  cases: readonly Case[],
  results: ReadonlyMap<string, LoadResult>,
  poolMax: number,
  concurrency: number,
): Record<string, number> {
  const figures: Record<string, number> = {};
  const floorQps = results.get('floor')?.qps ?? Number.NaN;
  const q = (key: string) => results.get(key)?.qps ?? Number.NaN;
  const rows = cases.map((c) => {
    const r = results.get(c.key);
    if (!r) throw new Error(`no result for ${c.key}`);
    figures[`${c.key}_qps`] = round(r.qps, 1);
    figures[`${c.key}_p50_ms`] = round(r.p50Ms, 3);
    figures[`${c.key}_p99_ms`] = round(r.p99Ms, 3);
    if (r.errors > 0) figures[`${c.key}_errors`] = r.errors;
    return [
      c.label,
      r.qps.toFixed(0),
      r.p50Ms.toFixed(2),
      r.p99Ms.toFixed(2),
      (r.qps / floorQps).toFixed(3),
      String(r.errors),
    ];
  });
  printTable(['case', 'calls/s', 'p50 ms', 'p99 ms', '/floor', 'errors'], rows);

  const ratios: [string, string, number][] = [
    ['rls_pk_over_floor', 'b/a  RLS pk / floor', q('rls_pk') / floorQps],
    ['service_pk_over_floor', 'c/a  service_role pk / floor', q('service_pk') / floorQps],
    ['rls_list_over_floor', 'd/a  RLS list / floor', q('rls_list') / floorQps],
    ['rls_pk_over_service_pk', 'b/c  RLS pk / service_role pk (cost of RLS)', q('rls_pk') / q('service_pk')],
    ['rls_list_over_pg_direct', 'd/e  RLS list / node-postgres direct', q('rls_list') / q('pg_direct')],
    ['observed_over_plain', 'g/f  observability on / off', q('observed_pk') / q('plain_pk')],
  ];
  for (const [key, label, value] of ratios) {
    if (Number.isNaN(value)) continue;
    figures[key] = round(value, 3);
    const goal =
      key === 'rls_pk_over_floor' ? RLS_TARGET : key === 'observed_over_plain' ? OBSERVED_TARGET : 0;
    const target = goal > 0 ? `  target >= ${goal}: ${value >= goal ? 'met' : 'MISSED'}` : '';
    console.log(`  ${label.padEnd(46)} ${value.toFixed(3)}${target}`);
  }
  figures.pool_max = poolMax;
  figures.concurrency = concurrency;
  return figures;
}

function printTable(header: readonly string[], rows: readonly (readonly string[])[]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)))
      .join('  ');
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of rows) console.log(line(row));
}

/** 200 more Acme posts (as superuser), so the list case reads a full page from a realistic table. */
async function seedBenchPosts(url: string): Promise<void> {
  await withClient(url, async (c) => {
    await c.query(
      `insert into public.posts (tenant_id, author_id, title, body, status)
       select $1, $2, 'Bench post ' || g, repeat('lorem ipsum ', 20), 'published'
       from generate_series(1, $3::int) g`,
      [ACME, ALICE, EXTRA_POSTS],
    );
    await c.query('analyze public.posts');
  });
}

function condition(column: string, kind: NonNullable<Value['kind']>) {
  return {
    kind: { $case: 'condition' as const, value: { column, op: Operator.OPERATOR_EQ, value: { kind } } },
  };
}

const rowCount = (response: data.SelectResponse) => response.result?.rows.length ?? 0;

async function expectRows(key: string, actual: Promise<number>, expected: number): Promise<void> {
  const n = await actual;
  if (n !== expected) throw new Error(`data bench: case ${key} returned ${n} rows, expected ${expected}`);
}

const round = (value: number, digits: number) => Number(value.toFixed(digits));

/** Calls per second of `a` over `b`, round by round (the rounds both cases ran in). */
function roundRatios(a: readonly LoadSample[] | undefined, b: readonly LoadSample[] | undefined): number[] {
  if (!a || !b) return [];
  const qps = (s: LoadSample) => (s.latencies.length * 1000) / s.measureMs;
  return a.slice(0, b.length).map((sample, i) => qps(sample) / qps(b[i] as LoadSample));
}

interface RunningServer {
  readonly port: number;
  readonly poolMax: number;
  close(): Promise<void>;
}

async function startInProcess(env: Record<string, string>): Promise<RunningServer> {
  const config = loadDataConfig(env);
  const server: DataServer = await startDataServer(config);
  return { port: server.port, poolMax: config.pool.max, close: () => server.close() };
}

function startChild(env: Record<string, string>, nodeFlags: readonly string[]): Promise<RunningServer> {
  return startChildServer('data', env, nodeFlags);
}
