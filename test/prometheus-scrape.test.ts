import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { v } from '@sluice/client';
import { databaseReady } from '@sluice/db';
import { createLogger, type OpsServer, startOpsServer } from '@sluice/observability';
import {
  ACME,
  announceSkip,
  type Daemon,
  findExecutable,
  freePort,
  startDaemon,
  waitFor,
} from '@sluice/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type TestStack } from '../services/data/test/helpers';

// Issue 8, part 4: a real Prometheus (the Debian package's binary) scrapes the ops listener of a
// running data service every second, and a PromQL query over its HTTP API returns exactly the
// RPCs this test made. Skipped, loudly, when no `prometheus` binary is installed (.ci/run
// installs it).

const PROMETHEUS = findExecutable('prometheus');
const SERVICE = 'sluice.data.v1.DataService';

if (!PROMETHEUS) {
  describe('Prometheus scrape', () => {
    it.skip(
      announceSkip(
        'test/prometheus-scrape.test.ts',
        'no `prometheus` binary on PATH or in /usr/sbin (Debian: apt-get install --no-install-recommends prometheus; .ci/run does this as root)',
      ),
      () => {},
    );
  });
} else {
  const binary = PROMETHEUS;
  let stack: TestStack;
  let ops: OpsServer;
  let prometheus: Daemon | undefined;
  let promUrl = '';
  let dir = '';

  beforeAll(async () => {
    stack = await startStack();
    ops = await startOpsServer({
      address: '127.0.0.1:0',
      logger: createLogger({ service: 'test', level: 'silent', env: 'test' }),
      ready: async () =>
        (await databaseReady(stack.db.appUrl)) ? { ready: true } : { ready: false, reason: 'database' },
    });
    dir = mkdtempSync(path.join(tmpdir(), 'sluice-prometheus-'));
    const config = path.join(dir, 'prometheus.yml');
    writeFileSync(
      config,
      [
        'global:',
        '  scrape_interval: 1s',
        '  scrape_timeout: 900ms',
        '  evaluation_interval: 1s',
        'scrape_configs:',
        '  - job_name: sluice',
        '    static_configs:',
        `      - targets: ['127.0.0.1:${ops.port}']`,
        '',
      ].join('\n'),
    );
    const port = await freePort();
    promUrl = `http://127.0.0.1:${port}`;
    prometheus = startDaemon(binary, [
      `--config.file=${config}`,
      `--storage.tsdb.path=${path.join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--storage.tsdb.retention.time=1h',
      '--log.level=warn',
    ]);
    const daemon = prometheus;
    await waitFor('Prometheus to be ready', async () => (await fetch(`${promUrl}/-/ready`)).ok, {
      timeoutMs: 20_000,
      context: () => `prometheus (${binary}) output:\n${daemon.output()}`,
    });
  });

  afterAll(async () => {
    await prometheus?.stop();
    await ops?.close();
    await stack?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  interface Target {
    health: string;
    lastScrape: string;
    lastError: string;
    scrapeUrl: string;
  }

  async function target(): Promise<Target | undefined> {
    const body = (await (await fetch(`${promUrl}/api/v1/targets`)).json()) as {
      data: { activeTargets: Target[] };
    };
    return body.data.activeTargets.find((t) => t.scrapeUrl.includes(`:${ops.port}/metrics`));
  }

  /** Waits until Prometheus has completed a successful scrape that started after `since`. */
  async function scrapedAfter(since: number): Promise<void> {
    await waitFor(
      'a Prometheus scrape of the ops listener',
      async () => {
        const t = await target();
        return t?.health === 'up' && Date.parse(t.lastScrape) > since;
      },
      { timeoutMs: 15_000, context: () => `target: ${JSON.stringify(prometheus?.output())}` },
    );
    // lastScrape is the scrape's start; its samples are queryable once it completed.
    await new Promise((r) => setTimeout(r, 200));
  }

  /** An instant PromQL query, as {labels joined by '/': value}. */
  async function query(promql: string, labels: readonly string[]): Promise<Record<string, number>> {
    const url = `${promUrl}/api/v1/query?query=${encodeURIComponent(promql)}`;
    const body = (await (await fetch(url)).json()) as {
      status: string;
      error?: string;
      data: { result: { metric: Record<string, string>; value: [number, string] }[] };
    };
    expect(body.status, body.error).toBe('success');
    const out: Record<string, number> = {};
    for (const r of body.data.result)
      out[labels.map((l) => r.metric[l] ?? '').join('/')] = Number(r.value[1]);
    return out;
  }

  function delta(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, n] of Object.entries(after)) if (n - (before[k] ?? 0) !== 0) out[k] = n - (before[k] ?? 0);
    return out;
  }

  const HANDLED = `sum by (grpc_method, grpc_code) (grpc_server_handled_total{grpc_service="${SERVICE}"})`;
  const STARTED = `sum by (grpc_method) (grpc_server_started_total{grpc_service="${SERVICE}"})`;
  const HANDLING_COUNT = `sum by (grpc_method) (grpc_server_handling_seconds_count{grpc_service="${SERVICE}"})`;

  describe('Prometheus scrape', () => {
    it('a PromQL query over the HTTP API returns the RPCs just made, by method and code', async () => {
      // The baseline: what Prometheus has before the calls (the series may not exist yet).
      await scrapedAfter(Date.now());
      const handledBefore = await query(HANDLED, ['grpc_method', 'grpc_code']);
      const startedBefore = await query(STARTED, ['grpc_method']);
      const countBefore = await query(HANDLING_COUNT, ['grpc_method']);

      const alice = stack.client(await stack.token('alice'));
      for (let i = 0; i < 5; i++) await alice.select({ table: 'posts', columns: ['id'], limit: 1 });
      for (let i = 0; i < 2; i++) await alice.select({ table: 'no_such_table' }).catch(() => {});
      for (let i = 0; i < 3; i++)
        await alice.insert({
          table: 'posts',
          columns: ['tenant_id', 'title'],
          rows: [{ values: [v.string(ACME), v.string(`scraped ${i}`)] }],
        });
      await alice.describeSchema({});
      // A margin past the last answer, so the scrape starts after every counter was recorded.
      const callsDone = Date.now() + 100;

      await scrapedAfter(callsDone);
      const handled = delta(await query(HANDLED, ['grpc_method', 'grpc_code']), handledBefore);
      expect(handled).toEqual({
        'Select/OK': 5,
        'Select/INVALID_ARGUMENT': 2,
        'Insert/OK': 3,
        'DescribeSchema/OK': 1,
      });
      const perMethod = { Select: 7, Insert: 3, DescribeSchema: 1 };
      expect(delta(await query(STARTED, ['grpc_method']), startedBefore)).toEqual(perMethod);
      expect(delta(await query(HANDLING_COUNT, ['grpc_method']), countBefore)).toEqual(perMethod);
      // The target is scraped as `up` and with Node's process metrics alongside.
      const up = await query('up{job="sluice"}', ['job']);
      expect(up).toEqual({ sluice: 1 });
      const pool = await query('db_pool_connections{pool="data"}', ['pool']);
      expect(pool.data).toBeGreaterThan(0);
    }, 45_000);
  });
}
