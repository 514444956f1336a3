import { createHmac, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sleep } from '@sluice/core';
import { changePositionNow } from '@sluice/webhooks-service';
import pg from 'pg';
import { Pool as HttpPool } from 'undici';
import { createBenchDatabase } from './bench-database';
import { type ChildServer, startChildServer } from './child-server';
import { type LoadSample, runClosedLoop, summarize } from './load';
import { runClaimCost } from './webhooks-claims';

export interface WebhooksBenchOptions {
  /** Superuser URL of a PostgreSQL to use; an embedded one in a temp folder when undefined. */
  readonly adminUrl: string | undefined;
  /** Inbound: concurrent requests, and the windows (floor and inbound interleaved, `rounds` each). */
  readonly concurrency: number;
  readonly warmupSeconds: number;
  readonly measureSeconds: number;
  readonly rounds: number;
  /** Outbound: endpoints, deliveries per second over all of them, measured seconds after a warm-up. */
  readonly endpoints: number;
  readonly outboundRate: number;
  readonly outboundSeconds: number;
  readonly outboundWarmupSeconds: number;
  /** Failure step: share of receiver answers that are 500 (one endpoint is dead besides). */
  readonly failureRate: number;
  /** Failure step: whether one endpoint is dead (off: a control run, to see what the dead one costs the others). */
  readonly deadEndpoint: boolean;
  /** After the writer stops, how long to wait for the last deliveries (retries included). */
  readonly drainSeconds: number;
  readonly serverNodeFlags: readonly string[];
  readonly serverEnv: Readonly<Record<string, string>>;
  /** Only these steps (inbound, outbound, failures); all when empty. */
  readonly only: readonly string[];
}

const DEFAULTS: WebhooksBenchOptions = {
  adminUrl: undefined,
  concurrency: 64,
  warmupSeconds: 2,
  measureSeconds: 8,
  rounds: 3,
  endpoints: 100,
  outboundRate: 1000,
  outboundSeconds: 60,
  outboundWarmupSeconds: 5,
  failureRate: 0.2,
  deadEndpoint: true,
  drainSeconds: 90,
  serverNodeFlags: [],
  serverEnv: {},
  only: [],
};

const JWT_SECRET = 'bench-secret-that-is-long-enough-for-hs256!';
const INBOUND_OVER_FLOOR_TARGET = 0.15;
const INBOUND_RATE_TARGET = 3000;
const OUTBOUND_P99_TARGET_MS = 250;
const ACME = '11111111-1111-1111-1111-111111111111';
const ALICE = 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa';
// Shortened for the benchmark (the defaults wait minutes to hours): every failed delivery is
// retried within seconds, so "every message delivered in the end" can be checked in one run.
const FAST_RETRIES = {
  WEBHOOKS_RETRY_SCHEDULE: '1,1,2,2,3,3,5,5,5,5',
  WEBHOOKS_MIN_RETRY_AFTER_TIMEOUT_MS: '1000',
  WEBHOOKS_BREAKER_RESET_MS: '2000',
  WEBHOOKS_REQUEST_TIMEOUT_MS: '5000',
};

/**
 * The webhooks benchmark of issue 9: (a) a bare 200 on the ingress's HTTP stack and (b) verified,
 * durably stored Standard Webhooks requests, interleaved rounds at `concurrency`; (c) outbound row
 * changes to `endpoints` endpoints on a local receiver at `outboundRate` deliveries/s, latency from
 * the writer's COMMIT to receipt (one clock, this process); (d) the same with `failureRate` of the
 * answers 500 and one endpoint dead, retries shortened, until every message has arrived; then
 * what a delivery claim costs by the number of enabled endpoints (webhooks-claims.ts). The
 * service runs in a child process. Prints tables and returns the figures of the final JSON line.
 */
export async function runWebhooksBench(
  overrides: Partial<WebhooksBenchOptions> = {},
): Promise<Record<string, number>> {
  const options = { ...DEFAULTS, ...overrides };
  const wants = (step: string) => options.only.length === 0 || options.only.includes(step);
  const figures: Record<string, number> = {};
  const db = await createBenchDatabase(options.adminUrl);
  const cleanups: (() => Promise<unknown>)[] = [() => db.close()];
  try {
    const admin = new pg.Pool({ connectionString: db.url, max: 8 });
    admin.on('error', () => {});
    cleanups.unshift(() => admin.end());
    const service = await startChildServer(
      'webhooks',
      {
        LOG_LEVEL: 'silent',
        ...FAST_RETRIES,
        ...options.serverEnv,
        DATABASE_URL: db.appUrl,
        JWT_SECRET,
        WEBHOOKS_GRPC_ADDRESS: '127.0.0.1:0',
        WEBHOOKS_HTTP_ADDRESS: '127.0.0.1:0',
        WEBHOOKS_ALLOWED_HOSTS: '127.0.0.1',
        WEBHOOKS_SOURCE_RATE_PER_SECOND: '1000000',
        SHUTDOWN_GRACE_MS: '2000',
      },
      options.serverNodeFlags,
      { quiet: true },
    );
    cleanups.unshift(() => service.close());
    console.log(
      `webhooks: ${db.where}; service in a child process (pid ${service.pid}), pool max ${service.poolMax}`,
    );
    if (wants('inbound')) Object.assign(figures, await inbound(admin, service, options));
    if (wants('outbound')) Object.assign(figures, await outbound(admin, db.url, options, 0, 'outbound'));
    if (wants('failures'))
      Object.assign(figures, await outbound(admin, db.url, options, options.failureRate, 'failures'));
  } finally {
    for (const cleanup of cleanups) await cleanup().catch(() => {});
  }
  // Last, on a database of its own, with the service stopped.
  if (wants('claims')) Object.assign(figures, await runClaimCost(options.adminUrl));
  const line = {
    floor_per_s: figures.floor_per_s ?? Number.NaN,
    inbound_per_s: figures.inbound_per_s ?? Number.NaN,
    inbound_over_floor: figures.inbound_over_floor ?? Number.NaN,
    inbound_p99_ms: figures.inbound_p99_ms ?? Number.NaN,
    outbound_per_s: figures.outbound_per_s ?? Number.NaN,
    outbound_p99_ms: figures.outbound_p99_ms ?? Number.NaN,
    lost: (figures.outbound_lost ?? 0) + (figures.failures_lost ?? 0) + (figures.inbound_lost ?? 0),
    duplicates: (figures.outbound_duplicates ?? 0) + (figures.failures_duplicates ?? 0),
    ...figures,
  };
  return line;
}

// ---------------------------------------------------------------------------------------------
// (a) and (b): inbound

async function inbound(
  admin: pg.Pool,
  service: ChildServer,
  options: WebhooksBenchOptions,
): Promise<Record<string, number>> {
  const secret = `whsec_${randomBytes(32).toString('base64')}`;
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  const { rows } = await admin.query<{ id: string }>(
    "insert into sluice_webhooks.sources (name, kind) values ('bench', 'standard-webhooks') returning id",
  );
  await admin.query('insert into sluice_webhooks.secrets (source_id, secret) values ($1, $2)', [
    rows[0]?.id,
    secret,
  ]);
  const floor = await startChildServer(
    'http-floor',
    { WEBHOOKS_HTTP_ADDRESS: '127.0.0.1:0' },
    options.serverNodeFlags,
    { quiet: true },
  );
  try {
    const clients = {
      floor: new HttpPool(`http://127.0.0.1:${floor.httpPort}`, { connections: options.concurrency }),
      inbound: new HttpPool(`http://127.0.0.1:${service.httpPort}`, { connections: options.concurrency }),
    };
    let n = 0;
    const post = (client: HttpPool) => async () => {
      const id = `msg_bench_${process.pid}_${++n}`;
      const body = JSON.stringify({
        type: 'invoice.paid',
        data: { id, amount: 12_345, currency: 'eur', customer: 'cus_0123456789', note: 'x'.repeat(160) },
      });
      const timestamp = Math.floor(Date.now() / 1000).toString();
      const signature = createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64');
      const response = await client.request({
        method: 'POST',
        path: '/webhooks/bench',
        headers: {
          'content-type': 'application/json',
          'webhook-id': id,
          'webhook-timestamp': timestamp,
          'webhook-signature': `v1,${signature}`,
        },
        body,
      });
      await response.body.dump();
      if (response.statusCode !== 200 && response.statusCode !== 201 && response.statusCode !== 202)
        throw new Error(`HTTP ${response.statusCode}`);
      if (client === clients.inbound) acknowledged += 1;
    };
    let acknowledged = 0;
    const samples: Record<'floor' | 'inbound', LoadSample[]> = { floor: [], inbound: [] };
    const ratios: number[] = [];
    for (let round = 0; round < options.rounds; round++) {
      // Alternate which goes first, so drift over the run does not favour one side.
      const order = round % 2 === 0 ? (['floor', 'inbound'] as const) : (['inbound', 'floor'] as const);
      const qps: Record<string, number> = {};
      for (const which of order) {
        const sample = await runClosedLoop(post(clients[which]), {
          concurrency: options.concurrency,
          warmupMs: options.warmupSeconds * 1000,
          measureMs: options.measureSeconds * 1000,
        });
        samples[which].push(sample);
        qps[which] = sample.latencies.length / (sample.measureMs / 1000);
      }
      ratios.push((qps.inbound ?? 0) / (qps.floor ?? 1));
    }
    await Promise.all([clients.floor.close(), clients.inbound.close()]);
    const a = summarize(samples.floor);
    const b = summarize(samples.inbound);
    const stored = Number(
      (
        await admin.query<{ n: string }>(
          "select count(*)::text as n from sluice_webhooks.inbox i join sluice_webhooks.sources s on s.id = i.source_id where s.name = 'bench'",
        )
      ).rows[0]?.n,
    );
    const ratio = b.qps / a.qps;
    const sortedRatios = [...ratios].sort((x, y) => x - y);
    printTable(
      ['case', 'req/s', 'p50 ms', 'p99 ms', 'errors'],
      [
        [
          '(a) bare 200, same HTTP stack',
          a.qps.toFixed(0),
          a.p50Ms.toFixed(2),
          a.p99Ms.toFixed(2),
          String(a.errors),
        ],
        ['(b) verified + stored', b.qps.toFixed(0), b.p50Ms.toFixed(2), b.p99Ms.toFixed(2), String(b.errors)],
      ],
    );
    if (b.firstError) console.log(`  first inbound error: ${String(b.firstError)}`);
    console.log(
      `  inbound_over_floor ${ratio.toFixed(3)} (per round ${ratios.map((r) => r.toFixed(3)).join(', ')}; ` +
        `median ${(sortedRatios[Math.floor(sortedRatios.length / 2)] ?? Number.NaN).toFixed(3)}) — target ≥ ${INBOUND_OVER_FLOOR_TARGET} ` +
        `${ratio >= INBOUND_OVER_FLOOR_TARGET ? 'met' : 'MISSED'}; ${b.qps.toFixed(0)}/s — target ≥ ${INBOUND_RATE_TARGET}/s ` +
        `${b.qps >= INBOUND_RATE_TARGET ? 'met' : 'MISSED'}`,
    );
    console.log(`  acknowledged ${acknowledged} (warm-up included), stored ${stored}`);
    return {
      floor_per_s: round1(a.qps),
      inbound_per_s: round1(b.qps),
      inbound_over_floor: round3(ratio),
      inbound_p50_ms: round2(b.p50Ms),
      inbound_p99_ms: round2(b.p99Ms),
      inbound_lost: Math.max(0, acknowledged - stored),
    };
  } finally {
    await floor.close();
  }
}

// ---------------------------------------------------------------------------------------------
// (c) and (d): outbound

interface Receipt {
  /** Receipt time of the first 2xx answer for this (endpoint, webhook-id). */
  okAt?: number;
  /** The same on the wall clock (Date.now()), to compare with the message's stored time. */
  okWallMs?: number;
  /** The message's created_at (the body's "timestamp"): when the fan-out stored it. */
  storedMs?: number;
  attempts: number;
  oks: number;
}

/** A local receiver for every endpoint (path /e/<n>), answering 500 to `failureRate` of requests. */
class Receiver {
  readonly byEndpoint = new Map<string, Map<string, Receipt>>();
  /** webhook-id → title of the post it carries (for the commit-time lookup). */
  readonly titles = new Map<string, string>();
  server!: Server;

  constructor(private readonly failureRate: number) {}

  async start(): Promise<number> {
    this.server = createServer((req, res) => void this.handle(req, res));
    this.server.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return (this.server.address() as AddressInfo).port;
  }

  private async handle(req: IncomingMessage, res: import('node:http').ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const now = performance.now();
    const wallNow = Date.now();
    const endpoint = req.url ?? '';
    const id = String(req.headers['webhook-id'] ?? '');
    let receipts = this.byEndpoint.get(endpoint);
    if (!receipts) {
      receipts = new Map();
      this.byEndpoint.set(endpoint, receipts);
    }
    let receipt = receipts.get(id);
    if (!receipt) {
      receipt = { attempts: 0, oks: 0 };
      receipts.set(id, receipt);
    }
    receipt.attempts += 1;
    if (receipt.storedMs === undefined) {
      const text = Buffer.concat(chunks).toString('utf8');
      if (!this.titles.has(id)) {
        const title = /"title"\s*:\s*"([^"]+)"/.exec(text)?.[1];
        if (title) this.titles.set(id, title);
      }
      const stored = /^\{"type":"[^"]*","timestamp":"([^"]+)"/.exec(text)?.[1];
      if (stored) receipt.storedMs = Date.parse(stored);
    }
    if (Math.random() < this.failureRate) {
      res.writeHead(500).end('induced failure');
      return;
    }
    receipt.oks += 1;
    receipt.okAt ??= now;
    receipt.okWallMs ??= wallNow;
    res.writeHead(204).end();
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

async function outbound(
  admin: pg.Pool,
  url: string,
  options: WebhooksBenchOptions,
  failureRate: number,
  step: 'outbound' | 'failures',
): Promise<Record<string, number>> {
  const receiver = new Receiver(failureRate);
  const port = await receiver.start();
  // Endpoints of earlier steps stop receiving: each step counts its own.
  await admin.query('update sluice_webhooks.endpoints set enabled = false');
  const start = await changePositionNow(admin);
  const dead = step === 'failures' && options.deadEndpoint;
  const endpointPaths: string[] = [];
  for (let i = 0; i < options.endpoints; i++) {
    // The last endpoint of the failure step is dead: nothing listens on its port.
    const url =
      dead && i === options.endpoints - 1
        ? 'http://127.0.0.1:9/dead'
        : `http://127.0.0.1:${port}/e/${step}-${i}`;
    if (!url.endsWith('/dead')) endpointPaths.push(`/e/${step}-${i}`);
    const { rows } = await admin.query<{ id: string }>(
      `insert into sluice_webhooks.endpoints (tenant_id, url, tables, owner_role, owner_claims, start_position)
       values ($1, $2, '[{"schema": "public", "table": "posts", "operations": ["INSERT"]}]', 'authenticated', $3, $4)
       returning id`,
      [ACME, url, JSON.stringify({ sub: ALICE, role: 'authenticated', tenant_id: ACME }), start],
    );
    await admin.query('insert into sluice_webhooks.secrets (endpoint_id, secret) values ($1, $2)', [
      rows[0]?.id,
      `whsec_${randomBytes(24).toString('base64')}`,
    ]);
  }
  // Each committed post reaches every endpoint: posts/s = deliveries/s ÷ endpoints.
  const postsPerSecond = options.outboundRate / options.endpoints;
  const writer = new pg.Pool({ connectionString: url, max: 4 });
  writer.on('error', () => {});
  const committed = new Map<string, { at: number; wallMs: number; measured: boolean }>();
  let writeErrors = 0;
  const totalMs = (options.outboundWarmupSeconds + options.outboundSeconds) * 1000;
  const began = performance.now();
  let written = 0;
  const pending: Promise<void>[] = [];
  while (performance.now() - began < totalMs) {
    const due = Math.floor(((performance.now() - began) / 1000) * postsPerSecond);
    while (written < due) {
      const title = `bench ${step} ${written}`;
      const measured = performance.now() - began >= options.outboundWarmupSeconds * 1000;
      written += 1;
      pending.push(
        writer
          .query(
            "insert into public.posts (tenant_id, author_id, title, body, status) values ($1, $2, $3, 'webhooks bench', 'published')",
            [ACME, ALICE, title],
          )
          .then(
            () => {
              committed.set(title, { at: performance.now(), wallMs: Date.now(), measured });
            },
            () => {
              writeErrors += 1;
            },
          ),
      );
    }
    await sleep(5);
  }
  await Promise.all(pending);
  const writeEnded = performance.now();
  const expected = committed.size * endpointPaths.length;
  // Drain: until every committed post reached every live endpoint, or the time is up.
  const delivered = () => {
    let n = 0;
    for (const path of endpointPaths)
      for (const r of receiver.byEndpoint.get(path)?.values() ?? []) if (r.okAt !== undefined) n += 1;
    return n;
  };
  while (delivered() < expected && performance.now() - writeEnded < options.drainSeconds * 1000)
    await sleep(100);
  await writer.end();
  await receiver.close();

  // Latency of measured posts, commit → first 2xx, per live endpoint; retried ones separately.
  const latencies: number[] = [];
  const firstTry: number[] = [];
  // Where first tries spend the time: commit → message stored by the fan-out (its created_at,
  // the fan-out transaction's start, in ms) → received. Wall clocks of one machine.
  const toStored: number[] = [];
  const storedToReceipt: number[] = [];
  let duplicates = 0;
  let measuredDelivered = 0;
  for (const path of endpointPaths) {
    for (const [id, r] of receiver.byEndpoint.get(path) ?? []) {
      duplicates += Math.max(0, r.oks - 1);
      const commit = committed.get(receiver.titles.get(id) ?? '');
      if (!commit?.measured || r.okAt === undefined) continue;
      measuredDelivered += 1;
      latencies.push(r.okAt - commit.at);
      if (r.attempts === 1) {
        firstTry.push(r.okAt - commit.at);
        if (r.storedMs !== undefined && r.okWallMs !== undefined) {
          toStored.push(r.storedMs - commit.wallMs);
          storedToReceipt.push(r.okWallMs - r.storedMs);
        }
      }
    }
  }
  const lost = expected - delivered();
  const sorted = Float64Array.from(latencies).sort();
  const sortedFirst = Float64Array.from(firstTry).sort();
  const perSecond = measuredDelivered / options.outboundSeconds;
  const p99 = percentile(sorted, 0.99);
  printTable(
    [
      'step',
      'endpoints',
      'delivered/s',
      'p50 ms',
      'p99 ms',
      'p99 first try',
      'lost',
      'dupes',
      'write errors',
    ],
    [
      [
        step === 'outbound'
          ? '(c) row changes'
          : `(d) ${Math.round(failureRate * 100)}% 500s${dead ? ' + 1 dead' : ', none dead'}`,
        String(options.endpoints),
        perSecond.toFixed(0),
        percentile(sorted, 0.5).toFixed(1),
        p99.toFixed(1),
        percentile(sortedFirst, 0.99).toFixed(1),
        String(lost),
        String(duplicates),
        String(writeErrors),
      ],
    ],
  );
  const split = (xs: number[]) => {
    const sortedXs = Float64Array.from(xs).sort();
    return `p50 ${percentile(sortedXs, 0.5).toFixed(0)} ms, p99 ${percentile(sortedXs, 0.99).toFixed(0)} ms`;
  };
  console.log(
    `  first tries: commit → stored by the fan-out ${split(toStored)}; stored → received ${split(storedToReceipt)}`,
  );
  if (step === 'outbound')
    console.log(
      `  p99 ${p99.toFixed(1)} ms — target ≤ ${OUTBOUND_P99_TARGET_MS} ms ${p99 <= OUTBOUND_P99_TARGET_MS ? 'met' : 'MISSED'}; ` +
        `nothing lost ${lost === 0 ? 'met' : 'MISSED'}`,
    );
  else {
    console.log(`  every message delivered in the end: ${lost === 0 ? 'met' : 'MISSED'} (${lost} missing)`);
    // The dead endpoint's messages are not lost: they wait in its queue (the breaker holds them).
    const { rows } = await admin.query<{ status: string; n: string; attempts: string }>(
      `select d.status, count(*)::text as n, coalesce(sum(d.attempts), 0)::text as attempts
         from sluice_webhooks.deliveries d join sluice_webhooks.endpoints e on e.id = d.endpoint_id
        where e.url = 'http://127.0.0.1:9/dead' and e.enabled group by d.status`,
    );
    console.log(
      `  dead endpoint: ${rows.map((r) => `${r.n} ${r.status} (${r.attempts} attempts)`).join(', ') || 'nothing queued'}`,
    );
  }
  const prefix = step === 'outbound' ? 'outbound' : 'failures';
  return {
    [`${prefix}_per_s`]: round1(perSecond),
    [`${prefix}_p50_ms`]: round1(percentile(sorted, 0.5)),
    [`${prefix}_p99_ms`]: round1(p99),
    [`${prefix}_first_try_p99_ms`]: round1(percentile(sortedFirst, 0.99)),
    [`${prefix}_lost`]: lost,
    [`${prefix}_duplicates`]: duplicates,
  };
}

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank] ?? Number.NaN;
}

const round1 = (x: number) => Math.round(x * 10) / 10;
const round2 = (x: number) => Math.round(x * 100) / 100;
const round3 = (x: number) => Math.round(x * 1000) / 1000;

function printTable(header: readonly string[], rows: readonly (readonly string[])[]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ');
  console.log(line(header));
  for (const row of rows) console.log(line(row));
}
