import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { signToken } from '@sluice/auth';
import { sleep } from '@sluice/core';
import { events } from '@sluice/proto';
import { type Channel, ChannelCredentials, createChannel, createClient, Metadata } from 'nice-grpc';
import pg from 'pg';
import { createBenchDatabase, withClient } from './bench-database';
import { startChildServer } from './child-server';
import { type LoadSample, runClosedLoop, summarize } from './load';

export interface EventsBenchOptions {
  /** Superuser URL of a PostgreSQL to use; an embedded one in a temp folder when undefined. */
  readonly adminUrl: string | undefined;
  /** Latency step: changes per second and how long. */
  readonly latencyRate: number;
  readonly latencySeconds: number;
  /** Fan-out step: changes per second over all tenants and how long. */
  readonly fanoutRate: number;
  readonly fanoutSeconds: number;
  /** Stretch step of the fan-out (0 seconds skips it). */
  readonly stretchRate: number;
  readonly stretchSeconds: number;
  readonly tenants: number;
  readonly membersPerTenant: number;
  /** HTTP/2 connections the fan-out streams are spread over. */
  readonly channels: number;
  /** After the writer stops, how long to wait for the last deliveries before counting drops. */
  readonly drainSeconds: number;
  /** Each delivery step first writes at its rate this long without counting (JIT, caches, pools). */
  readonly warmupSeconds: number;
  /** Capture cost: measured seconds per table (split over interleaved rounds) and writers. */
  readonly captureSeconds: number;
  readonly captureConcurrency: number;
  /** Extra node flags for the service's child process (e.g. --cpu-prof --cpu-prof-dir=/tmp/prof). */
  readonly serverNodeFlags: readonly string[];
  /** Extra environment for the service (DB_POOL_MAX, EVENTS_POLL_INTERVAL_MS, …); LOG_LEVEL silent. */
  readonly serverEnv: Readonly<Record<string, string>>;
  /** Only these steps (capture, latency, fanout, stretch); all when empty. */
  readonly only: readonly string[];
}

const JWT_SECRET = 'bench-secret-that-is-long-enough-for-hs256!';
const ALICE = 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa'; // admin of Acme (db/seed.sql)
const ACME = '11111111-1111-1111-1111-111111111111';
const LATENCY_TARGET_MS = 50;
const FANOUT_P99_TARGET_MS = 250;
const CAPTURE_TARGET = 0.6;
const WRITER_CONNECTIONS = 16;
const READY_TIMEOUT_MS = 30_000;
const SUBSCRIBE_WAVE = 100;
const INSERT_POST = `insert into public.posts (tenant_id, author_id, title, body, status)
  values ($1, $2, $3, 'written by the events benchmark', 'published') returning id`;

const DEFAULTS: EventsBenchOptions = {
  adminUrl: undefined,
  latencyRate: 200,
  latencySeconds: 10,
  fanoutRate: 250,
  fanoutSeconds: 60,
  stretchRate: 500,
  stretchSeconds: 15,
  tenants: 50,
  membersPerTenant: 20,
  channels: 10,
  drainSeconds: 5,
  warmupSeconds: 3,
  captureSeconds: 5,
  captureConcurrency: 8,
  serverNodeFlags: [],
  serverEnv: {},
  only: [],
};

/**
 * The events service benchmark of issue 3: (1) capture cost, single-row insert throughput into a
 * table with change capture over an identical one without, interleaved rounds; (2) commit-to-receive
 * latency for one subscriber at `latencyRate` changes/s; (3) fan-out under RLS, `tenants` ×
 * `membersPerTenant` subscribers (each its own user) over `channels` HTTP/2 connections, the writer
 * spreading `fanoutRate` changes/s over the tenants; (4) the same at `stretchRate`. Latency is
 * measured in this process from the writer's COMMIT resolving to the event arriving (one clock).
 * The service runs in a child process. Prints tables and returns the figures of the final JSON line.
 *
 * @throws only when the stack cannot be set up; failed writes and broken streams are counted.
 */
export async function runEventsBench(
  overrides: Partial<EventsBenchOptions> = {},
): Promise<Record<string, number>> {
  const options = { ...DEFAULTS, ...overrides };
  const wants = (step: string) => options.only.length === 0 || options.only.includes(step);
  const setupStarted = performance.now();
  const figures: Record<string, number> = {};
  const db = await createBenchDatabase(options.adminUrl);
  const cleanups: (() => Promise<unknown>)[] = [() => db.close()];
  try {
    // Everything written before the service starts is behind its feed's start position.
    const fanoutUsers = wants('fanout') || wants('stretch') ? await seedFanoutUsers(db.url, options) : [];
    await createCaptureTables(db.url);
    const writer = new pg.Pool({ connectionString: db.url, max: WRITER_CONNECTIONS });
    writer.on('error', () => {});
    cleanups.unshift(() => writer.end());

    if (wants('capture')) Object.assign(figures, await captureCost(writer, options));

    const serverEnv: Record<string, string> = {
      LOG_LEVEL: 'silent',
      EVENTS_POLL_INTERVAL_MS: '500',
      ...options.serverEnv,
      DATABASE_URL: db.appUrl,
      EVENTS_GRPC_ADDRESS: '127.0.0.1:0',
      JWT_SECRET,
      SHUTDOWN_GRACE_MS: '2000',
    };
    const server = await startChild(serverEnv, options.serverNodeFlags);
    cleanups.unshift(() => server.close());
    const address = `127.0.0.1:${server.port}`;
    const channels = Array.from({ length: Math.max(1, options.channels) }, () =>
      // A local subchannel pool: otherwise grpc-js shares one connection among equal channels.
      createChannel(address, ChannelCredentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }),
    );
    cleanups.unshift(async () => {
      for (const channel of channels) channel.close();
    });
    const tracker = new DeliveryTracker();
    const postgres = await postgresPids(db.url);
    const cpu = () => new CpuSampler([server.pid], postgres);
    console.log(
      `events: ${db.where}; service in a child process (pid ${server.pid}), LOG_LEVEL=${serverEnv.LOG_LEVEL}, ` +
        `EVENTS_POLL_INTERVAL_MS=${serverEnv.EVENTS_POLL_INTERVAL_MS}, pool max ${server.poolMax}; ` +
        `writer: superuser pg.Pool (${WRITER_CONNECTIONS}), single-row autocommit inserts into posts, paced; ` +
        `setup ${((performance.now() - setupStarted) / 1000).toFixed(1)}s`,
    );

    if (wants('latency')) {
      const stream = new Subscribers(channels, tracker);
      cleanups.unshift(async () => stream.close());
      stream.open([{ user: ALICE, tenant: ACME, token: await userToken(ALICE) }]);
      await stream.waitReady(writer, [{ tenant: ACME, author: ALICE }]);
      const step = await runStep(
        'latency',
        writer,
        tracker,
        stream,
        { ...stepShape(options), rate: options.latencyRate, seconds: options.latencySeconds },
        () => ({ tenant: ACME, author: ALICE }),
        cpu(),
      );
      stream.close();
      printSteps([step]);
      figures.latency_p50_ms = round(step.p50Ms, 2);
      figures.latency_p99_ms = round(step.p99Ms, 2);
      figures.latency_rate = options.latencyRate;
      figures.latency_dropped = step.dropped;
      console.log(
        `  latency p99 ${step.p99Ms.toFixed(1)} ms  target <= ${LATENCY_TARGET_MS} ms: ${step.p99Ms <= LATENCY_TARGET_MS ? 'met' : 'MISSED'}`,
      );
    }

    if (fanoutUsers.length > 0) {
      const subscribers = new Subscribers(channels, tracker);
      cleanups.unshift(async () => subscribers.close());
      const opened = performance.now();
      const specs = await Promise.all(
        fanoutUsers.map(async (u) => ({ ...u, token: await userToken(u.user) })),
      );
      const authors = tenantAuthors(fanoutUsers);
      // In waves: each new stream first catches up on the log through the service's small pool,
      // and 1,000 at once can time out acquiring a connection (UNAVAILABLE) — a reconnect storm,
      // not the steady state this step measures.
      let ready = 0;
      for (let i = 0; i < specs.length; i += SUBSCRIBE_WAVE) {
        subscribers.open(specs.slice(i, i + SUBSCRIBE_WAVE));
        ready = await subscribers.waitReady(writer, authors);
      }
      console.log(
        `  fan-out: ${ready}/${fanoutUsers.length} subscribers (${options.tenants} tenants × ${options.membersPerTenant}, ` +
          `viewer/editor) over ${channels.length} HTTP/2 connections, live in ${((performance.now() - opened) / 1000).toFixed(1)}s`,
      );
      const steps: StepResult[] = [];
      const row = (i: number) => authors[i % authors.length] as TenantAuthor;
      if (wants('fanout')) {
        const step = await runStep(
          'fanout',
          writer,
          tracker,
          subscribers,
          { ...stepShape(options), rate: options.fanoutRate, seconds: options.fanoutSeconds },
          row,
          cpu(),
        );
        steps.push(step);
        figures.fanout_target_per_s = Math.round(step.targetPerS);
        figures.fanout_delivered_per_s = round(step.deliveredPerS, 1);
        figures.fanout_p50_ms = round(step.p50Ms, 2);
        figures.fanout_p99_ms = round(step.p99Ms, 2);
        figures.fanout_dropped = step.dropped;
        figures.fanout_stream_errors = step.streamErrors;
        figures.fanout_subscribers = ready;
      }
      if (wants('stretch') && options.stretchSeconds > 0) {
        const step = await runStep(
          'stretch',
          writer,
          tracker,
          subscribers,
          { ...stepShape(options), rate: options.stretchRate, seconds: options.stretchSeconds },
          row,
          cpu(),
        );
        steps.push(step);
        figures.stretch_target_per_s = Math.round(step.targetPerS);
        figures.stretch_delivered_per_s = round(step.deliveredPerS, 1);
        figures.stretch_p99_ms = round(step.p99Ms, 2);
        figures.stretch_dropped = step.dropped;
      }
      printSteps(steps);
      for (const step of steps) {
        const allDelivered = step.dropped === 0 && step.deliveredPerS >= step.targetPerS * 0.99;
        const met = allDelivered && step.p99Ms <= FANOUT_P99_TARGET_MS && step.streamErrors === 0;
        console.log(
          `  ${step.name}: ${step.deliveredPerS.toFixed(0)}/${step.targetPerS.toFixed(0)} deliveries/s, ` +
            `p99 ${step.p99Ms.toFixed(1)} ms, ${step.dropped} dropped, ${step.streamErrors} streams ended  ` +
            `target (all delivered, p99 <= ${FANOUT_P99_TARGET_MS} ms, no drops): ${met ? 'met' : 'MISSED'}`,
        );
        if (step.firstStreamError) console.log(`    first stream error: ${step.firstStreamError}`);
        if (step.firstWriteError) console.log(`    first write error: ${step.firstWriteError}`);
      }
      subscribers.close();
    }
    return figures;
  } finally {
    for (const cleanup of cleanups) {
      await cleanup().catch((error: unknown) => console.error(`events bench cleanup: ${String(error)}`));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Capture cost

async function createCaptureTables(url: string): Promise<void> {
  await withClient(url, async (c) => {
    for (const name of ['bench_plain', 'bench_captured']) {
      await c.query(`create table public.${name} (
        id bigint generated always as identity primary key,
        tenant_id uuid, title text, body text, view_count bigint default 0)`);
    }
    await c.query(`select sluice.enable_changes('public.bench_captured')`);
  });
}

async function captureCost(writer: pg.Pool, options: EventsBenchOptions): Promise<Record<string, number>> {
  const rounds = 5;
  const insert = (table: string) => () =>
    writer.query(`insert into public.${table} (tenant_id, title, body) values ($1, $2, $3)`, [
      ACME,
      'capture cost',
      'a row of about the size of a post body',
    ]);
  const samples: Record<string, LoadSample[]> = { bench_plain: [], bench_captured: [] };
  for (let r = 0; r < rounds; r++) {
    // Alternate which goes first, so a trend over the run (autovacuum, WAL) hits both alike.
    const order = r % 2 === 0 ? ['bench_plain', 'bench_captured'] : ['bench_captured', 'bench_plain'];
    for (const table of order) {
      const sample = await runClosedLoop(insert(table), {
        concurrency: options.captureConcurrency,
        warmupMs: r === 0 ? 1000 : 200,
        measureMs: (options.captureSeconds * 1000) / rounds,
      });
      samples[table]?.push(sample);
    }
  }
  const plain = summarize(samples.bench_plain ?? []);
  const captured = summarize(samples.bench_captured ?? []);
  const ratio = captured.qps / plain.qps;
  printTable(
    ['capture cost (single-row inserts, superuser)', 'inserts/s', 'p50 ms', 'p99 ms', 'errors'],
    [
      ['bench_plain (no capture)', plain, 'plain'],
      ['bench_captured (sluice.enable_changes)', captured, 'captured'],
    ].map(([label, r]) => {
      const s = r as ReturnType<typeof summarize>;
      return [label as string, s.qps.toFixed(0), s.p50Ms.toFixed(2), s.p99Ms.toFixed(2), String(s.errors)];
    }),
  );
  console.log(
    `  ${options.captureConcurrency} writers, ${options.captureSeconds}s per table in ${rounds} interleaved rounds, ` +
      `events service not running yet. captured/plain ${ratio.toFixed(3)}  target >= ${CAPTURE_TARGET}: ${ratio >= CAPTURE_TARGET ? 'met' : 'MISSED'}`,
  );
  if (plain.firstError ?? captured.firstError)
    console.log(`  first error: ${String(plain.firstError ?? captured.firstError)}`);
  return {
    capture_ratio: round(ratio, 3),
    capture_plain_per_s: round(plain.qps, 1),
    capture_captured_per_s: round(captured.qps, 1),
  };
}

// ---------------------------------------------------------------------------------------------
// Fan-out population

interface FanoutUser {
  readonly user: string;
  readonly tenant: string;
  readonly role: 'viewer' | 'editor';
}
interface TenantAuthor {
  readonly tenant: string;
  readonly author: string;
}

const uuid = (prefix: string, n: number) => `${prefix}-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;

/** `tenants` tenants of `membersPerTenant` users each, alternately viewer and editor (superuser). */
async function seedFanoutUsers(url: string, options: EventsBenchOptions): Promise<FanoutUser[]> {
  const users: FanoutUser[] = [];
  for (let t = 0; t < options.tenants; t++) {
    for (let m = 0; m < options.membersPerTenant; m++) {
      users.push({
        user: uuid('e0000000', t * 1000 + m),
        tenant: uuid('f0000000', t),
        role: m % 2 === 0 ? 'editor' : 'viewer',
      });
    }
  }
  const tenants = [...new Set(users.map((u) => u.tenant))];
  await withClient(url, async (c) => {
    await c.query(
      `insert into public.tenants (id, name, slug)
       select id, 'Bench tenant ' || n, 'bench-' || n from unnest($1::uuid[]) with ordinality as t(id, n)`,
      [tenants],
    );
    await c.query(
      `insert into public.profiles (id, display_name)
       select id, 'Bench user ' || n from unnest($1::uuid[]) with ordinality as u(id, n)`,
      [users.map((u) => u.user)],
    );
    await c.query(
      `insert into public.tenant_memberships (tenant_id, user_id, role)
       select * from unnest($1::uuid[], $2::uuid[], $3::text[])`,
      [users.map((u) => u.tenant), users.map((u) => u.user), users.map((u) => u.role)],
    );
    await c.query('analyze public.tenant_memberships, public.posts');
  });
  return users;
}

/** One editor per tenant, the author of the tenant's benchmark posts. */
function tenantAuthors(users: readonly FanoutUser[]): TenantAuthor[] {
  const byTenant = new Map<string, string>();
  for (const u of users) if (u.role === 'editor' && !byTenant.has(u.tenant)) byTenant.set(u.tenant, u.user);
  return [...byTenant].map(([tenant, author]) => ({ tenant, author }));
}

const userToken = (sub: string) => signToken(JWT_SECRET, { sub, role: 'authenticated' }, { expiresIn: 3600 });

// ---------------------------------------------------------------------------------------------
// Subscribers and delivery accounting

/** Commit times of the writer's rows, and the commit-to-receive latency of each delivery. */
class DeliveryTracker {
  private readonly commits = new Map<string, { at: number; step: StepStats }>();
  /** Deliveries that arrived before the writer saw its COMMIT resolve (stamped with latency 0). */
  private readonly early = new Map<string, number[]>();

  committed(id: string, at: number, step: StepStats): void {
    this.commits.set(id, { at, step });
    const early = this.early.get(id);
    if (!early) return;
    this.early.delete(id);
    for (const received of early) step.latencies.push(Math.max(0, received - at));
  }

  received(id: string, at: number): void {
    const commit = this.commits.get(id);
    if (commit) commit.step.latencies.push(at - commit.at);
    else {
      const list = this.early.get(id);
      if (list) list.push(at);
      else this.early.set(id, [at]);
    }
  }
}

interface StepStats {
  readonly latencies: number[];
}

interface SubscriberSpec {
  readonly user: string;
  readonly tenant: string;
  readonly token: string;
}

interface Stream {
  readonly spec: SubscriberSpec;
  events: number;
  ended: boolean;
  error: string | undefined;
}

/** Streams of posts changes from now, one per subscriber, spread round-robin over the channels. */
class Subscribers {
  readonly streams: Stream[] = [];
  private readonly abort = new AbortController();

  constructor(
    private readonly channels: readonly Channel[],
    private readonly tracker: DeliveryTracker,
  ) {}

  open(specs: readonly SubscriberSpec[]): void {
    const clients = this.channels.map((channel) => createClient(events.EventsServiceDefinition, channel));
    for (const spec of specs) {
      const stream: Stream = { spec, events: 0, ended: false, error: undefined };
      const client = clients[this.streams.length % clients.length];
      this.streams.push(stream);
      if (client) void this.follow(client, stream);
    }
  }

  private async follow(
    client: ReturnType<typeof createClient<typeof events.EventsServiceDefinition>>,
    stream: Stream,
  ): Promise<void> {
    try {
      const responses = client.subscribe(
        { tables: [{ table: 'posts', columns: ['id'] }], start: { $case: 'fromNow', value: true } },
        { signal: this.abort.signal, metadata: Metadata({ authorization: `Bearer ${stream.spec.token}` }) },
      );
      for await (const response of responses) {
        const message = response.message;
        if (message?.$case !== 'change') continue;
        const at = performance.now();
        const kind = message.value.record?.values[0]?.kind;
        stream.events += 1;
        if (kind?.$case === 'intValue') this.tracker.received(String(kind.value), at);
      }
      stream.error = 'stream completed';
    } catch (error) {
      if (!this.abort.signal.aborted) stream.error = String(error);
    } finally {
      stream.ended = true;
    }
  }

  /** Streams that ended with an error (not by close). */
  get failed(): Stream[] {
    return this.streams.filter((s) => s.error !== undefined);
  }

  get live(): Stream[] {
    return this.streams.filter((s) => !s.ended);
  }

  /**
   * The service sends nothing when a stream is attached, so: a probe post per tenant, again every
   * 2 s, until every stream has received one (or READY_TIMEOUT_MS). Returns how many are live.
   */
  async waitReady(writer: pg.Pool, authors: readonly TenantAuthor[]): Promise<number> {
    const deadline = performance.now() + READY_TIMEOUT_MS;
    let probedAt = 0;
    while (performance.now() < deadline) {
      const waiting = this.streams.filter((s) => !s.ended && s.events === 0);
      if (waiting.length === 0) break;
      if (performance.now() - probedAt > 2000) {
        probedAt = performance.now();
        const tenants = new Set(waiting.map((s) => s.spec.tenant));
        await Promise.all(
          authors
            .filter((a) => tenants.has(a.tenant))
            .map((a) => writer.query(INSERT_POST, [a.tenant, a.author, 'probe'])),
        );
      }
      await sleep(50);
    }
    // Let the last probes land so they do not count in the first step.
    await sleep(500);
    const notReady = this.streams.filter((s) => s.events === 0 || s.ended);
    if (notReady.length > 0) {
      console.log(`  ${notReady.length} streams not live after ${READY_TIMEOUT_MS / 1000}s`);
      const failed = this.failed[0];
      if (failed) console.log(`    first stream error: ${failed.error}`);
    }
    return this.streams.length - notReady.length;
  }

  close(): void {
    this.abort.abort();
  }
}

// ---------------------------------------------------------------------------------------------
// One paced step

interface StepResult {
  readonly name: string;
  readonly rate: number;
  readonly writerPerS: number;
  readonly committed: number;
  readonly targetPerS: number;
  readonly deliveredPerS: number;
  readonly expected: number;
  readonly received: number;
  readonly dropped: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly streamErrors: number;
  readonly firstStreamError: string | undefined;
  readonly firstWriteError: string | undefined;
  readonly drainMs: number;
  readonly cpu: CpuReport;
  readonly benchLoopP99Ms: number;
}

interface StepShape {
  readonly rate: number;
  readonly seconds: number;
  readonly drainSeconds: number;
  readonly warmupSeconds: number;
}

function stepShape(options: EventsBenchOptions): Pick<StepShape, 'drainSeconds' | 'warmupSeconds'> {
  return { drainSeconds: options.drainSeconds, warmupSeconds: options.warmupSeconds };
}

async function runStep(
  name: string,
  writer: pg.Pool,
  tracker: DeliveryTracker,
  subscribers: Subscribers,
  shape: StepShape,
  row: (i: number) => TenantAuthor,
  cpu: CpuSampler,
): Promise<StepResult> {
  const stats: StepStats = { latencies: [] };
  const live = subscribers.live.filter((s) => s.events > 0);
  const failedBefore = subscribers.failed.length;
  const membersOf = new Map<string, number>();
  for (const s of live) membersOf.set(s.spec.tenant, (membersOf.get(s.spec.tenant) ?? 0) + 1);
  let expected = 0;
  let committed = 0;
  let firstWriteError: string | undefined;
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();

  // Warm-up writes go out at the same rate first; their deliveries are not counted.
  const warmup = Math.round(shape.rate * shape.warmupSeconds);
  const warmStats: StepStats = { latencies: [] };
  const total = warmup + Math.max(1, Math.round(shape.rate * shape.seconds));
  const begin = performance.now();
  let start = begin;
  const inFlight = new Set<Promise<void>>();
  for (let i = 0; i < total; i++) {
    const wait = begin + (i * 1000) / shape.rate - performance.now();
    if (wait >= 1) await sleep(wait);
    if (i === warmup) {
      start = performance.now();
      loop.reset();
    }
    const counted = i >= warmup;
    const { tenant, author } = row(i);
    const write: Promise<void> = writer.query(INSERT_POST, [tenant, author, `${name} ${i}`]).then(
      (result) => {
        const at = performance.now();
        if (!counted) {
          tracker.committed(String(result.rows[0]?.id), at, warmStats);
          return;
        }
        committed += 1;
        expected += membersOf.get(tenant) ?? 0;
        tracker.committed(String(result.rows[0]?.id), at, stats);
      },
      (error: unknown) => {
        firstWriteError ??= String(error);
      },
    );
    inFlight.add(write);
    void write.finally(() => inFlight.delete(write));
  }
  await Promise.all(inFlight);
  const writeMs = performance.now() - start;
  const drainStart = performance.now();
  while (stats.latencies.length < expected && performance.now() - drainStart < shape.drainSeconds * 1000) {
    await sleep(50);
  }
  const drainMs = performance.now() - drainStart;
  loop.disable();
  const cpuReport = cpu.report();
  const sorted = Float64Array.from(stats.latencies).sort();
  const failed = subscribers.failed;
  return {
    name,
    rate: shape.rate,
    writerPerS: committed / (writeMs / 1000),
    committed,
    targetPerS: (expected / committed) * shape.rate,
    deliveredPerS: stats.latencies.length / (writeMs / 1000),
    expected,
    received: stats.latencies.length,
    dropped: Math.max(0, expected - stats.latencies.length),
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
    maxMs: sorted.length > 0 ? (sorted[sorted.length - 1] ?? Number.NaN) : Number.NaN,
    streamErrors: failed.length - failedBefore,
    firstStreamError: failed[failedBefore]?.error,
    firstWriteError,
    drainMs,
    cpu: cpuReport,
    benchLoopP99Ms: loop.percentile(99) / 1e6,
  };
}

function printSteps(steps: readonly StepResult[]): void {
  if (steps.length === 0) return;
  const pct = (n: number) => `${n.toFixed(0)}%`;
  printTable(
    [
      'step',
      'changes/s',
      'target del/s',
      'delivered/s',
      'p50 ms',
      'p99 ms',
      'max ms',
      'dropped',
      'ended',
      'drain s',
      'CPU events',
      'CPU postgres',
      'CPU bench',
      'bench loop p99',
    ],
    steps.map((s) => [
      s.name,
      `${s.writerPerS.toFixed(0)}/${s.rate}`,
      s.targetPerS.toFixed(0),
      s.deliveredPerS.toFixed(0),
      s.p50Ms.toFixed(1),
      s.p99Ms.toFixed(1),
      s.maxMs.toFixed(1),
      String(s.dropped),
      String(s.streamErrors),
      (s.drainMs / 1000).toFixed(1),
      pct(s.cpu.service),
      pct(s.cpu.postgres),
      pct(s.cpu.bench),
      `${s.benchLoopP99Ms.toFixed(1)} ms`,
    ]),
  );
  console.log(
    '  (CPU: % of one core over the step incl. warm-up and drain; latency = COMMIT resolved in the writer → event decoded here,\n' +
      '   counted after a warm-up at the same rate: BENCH_WARMUP_SECONDS, default 3)',
  );
}

// ---------------------------------------------------------------------------------------------
// CPU accounting (Linux /proc; zeros elsewhere)

interface CpuReport {
  readonly service: number;
  readonly postgres: number;
  readonly bench: number;
}

const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

/** utime + stime of a process, in seconds (undefined when it is gone or there is no /proc). */
function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}

function childrenOf(parent: number): number[] {
  const pids: number[] = [];
  try {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        if (ppid === parent) pids.push(Number(entry));
      } catch {}
    }
  } catch {}
  return pids;
}

/** The postmaster of the benchmark's cluster (parent of one of its backends). */
async function postgresPids(url: string): Promise<number | undefined> {
  try {
    const backend = await withClient(url, (c) => c.query<{ pid: number }>('select pg_backend_pid() as pid'));
    const pid = backend.rows[0]?.pid;
    if (pid === undefined) return undefined;
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

class CpuSampler {
  private readonly started = performance.now();
  private readonly benchStart = process.cpuUsage();
  private readonly service: Map<number, number>;
  private readonly postgres: Map<number, number>;

  constructor(
    private readonly servicePids: readonly number[],
    private readonly postmaster: number | undefined,
  ) {
    this.service = this.sample(servicePids);
    this.postgres = this.sample(this.postgresAll());
  }

  private postgresAll(): number[] {
    return this.postmaster === undefined ? [] : [this.postmaster, ...childrenOf(this.postmaster)];
  }

  private sample(pids: readonly number[]): Map<number, number> {
    const map = new Map<number, number>();
    for (const pid of pids) {
      const s = cpuSeconds(pid);
      if (s !== undefined) map.set(pid, s);
    }
    return map;
  }

  report(): CpuReport {
    const seconds = (performance.now() - this.started) / 1000;
    const delta = (before: Map<number, number>, after: Map<number, number>) => {
      let sum = 0;
      for (const [pid, s] of after) sum += s - (before.get(pid) ?? 0);
      return (sum / seconds) * 100;
    };
    const bench = process.cpuUsage(this.benchStart);
    return {
      service: delta(this.service, this.sample(this.servicePids)),
      postgres: delta(this.postgres, this.sample(this.postgresAll())),
      bench: ((bench.user + bench.system) / 1e6 / seconds) * 100,
    };
  }
}

// ---------------------------------------------------------------------------------------------
// The service's child process

interface RunningServer {
  readonly port: number;
  readonly pid: number;
  readonly poolMax: number;
  close(): Promise<void>;
}

function startChild(env: Record<string, string>, nodeFlags: readonly string[]): Promise<RunningServer> {
  return startChildServer('events', env, nodeFlags);
}

// ---------------------------------------------------------------------------------------------

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

/** Nearest-rank percentile of sorted values (NaN when there are none). */
function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank] ?? Number.NaN;
}

const round = (value: number, digits: number) => Number(value.toFixed(digits));
