import { createLogger, flushLogs, type LokiSettings, logLinesDropped } from '@sluice/observability';
import { type LokiReceiver, startLokiReceiver } from '@sluice/testing';
import { afterEach, describe, expect, it } from 'vitest';

// Logs shipped to a real HTTP server speaking Loki's push API: labels, timestamps, levels and
// content as Loki stores them; Loki down or stuck never slows a log call and drops are counted.

/** Lines written to it, as a pino destination (instead of the process's stdout). */
class Capture {
  text = '';
  write(chunk: string): void {
    this.text += chunk;
  }
  lines(): Record<string, unknown>[] {
    return this.text
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }
}

function settings(url: string, more: Partial<LokiSettings> = {}): LokiSettings {
  return {
    pushUrl: `${url}/loki/api/v1/push`,
    basicAuth: undefined,
    tenantId: undefined,
    batchIntervalMs: 50,
    timeoutMs: 1000,
    maxBufferedLines: 10_000,
    gzip: true,
    ...more,
  };
}

async function dropped(): Promise<number> {
  return (await logLinesDropped.get()).values.reduce((sum, v) => sum + v.value, 0);
}

const receivers: LokiReceiver[] = [];
async function receiver(mode?: 'hang' | 'reject'): Promise<LokiReceiver> {
  const r = await startLokiReceiver({ mode });
  receivers.push(r);
  return r;
}

afterEach(async () => {
  await flushLogs(200);
  await Promise.all(receivers.splice(0).map((r) => r.close()));
});

describe('Loki shipping', () => {
  it('sends only the static labels, nanosecond timestamps, levels by name and request fields in the line', async () => {
    const loki = await receiver();
    const stdout = new Capture();
    const logger = createLogger({
      service: 'data',
      level: 'info',
      env: 'test',
      loki: settings(loki.url, { basicAuth: { username: 'u1', password: 'p1' }, tenantId: 'team-a' }),
      stdout,
    });
    const before = BigInt(Date.now()) * 1_000_000n;
    const call = logger.child({
      method: '/sluice.data.v1.DataService/Select',
      request_id: 'req-labels-1',
      trace_id: '4bf92f3577b34da6a3ce929d0e0e4736',
    });
    call.info({ grpc_code: 'OK', duration_ms: 1.5, tenant_id: 'acme', user_id: 'u-9' }, 'rpc');
    call.warn('a warning');
    call.error({ err: new Error('boom') }, 'an error');
    call.debug('below the level: not written');
    const after = BigInt(Date.now()) * 1_000_000n;
    await loki.waitFor((l) => l.line.includes('an error'));

    const lines = loki.lines();
    expect(lines).toHaveLength(3);
    for (const line of lines) {
      expect(Object.keys(line.labels).sort()).toEqual(['app', 'env', 'level', 'service']);
      expect(line.labels).toMatchObject({ app: 'sluice', service: 'data', env: 'test' });
      expect(line.ts).toMatch(/^\d{19}$/);
      const ts = BigInt(line.ts);
      expect(ts >= before - 1_000_000_000n && ts <= after + 1_000_000_000n).toBe(true);
    }
    expect(lines.map((l) => l.labels.level)).toEqual(['info', 'warn', 'error']);
    // Lines logged within one millisecond keep their order.
    expect(lines.map((l) => l.ts)).toEqual(lines.map((l) => l.ts).sort());
    const rpc = JSON.parse(lines[0]!.line) as Record<string, unknown>;
    expect(rpc).toMatchObject({
      level: 'info',
      msg: 'rpc',
      method: '/sluice.data.v1.DataService/Select',
      request_id: 'req-labels-1',
      trace_id: '4bf92f3577b34da6a3ce929d0e0e4736',
      tenant_id: 'acme',
      user_id: 'u-9',
      grpc_code: 'OK',
    });
    expect(BigInt(rpc.time as number) * 1_000_000n).toBe(BigInt(lines[0]!.ts));
    expect(JSON.parse(lines[2]!.line)).toMatchObject({ err: { message: 'boom' } });

    const push = loki.pushes[0]!;
    expect(push.headers.authorization).toBe(`Basic ${Buffer.from('u1:p1').toString('base64')}`);
    expect(push.headers['x-scope-orgid']).toBe('team-a');
    expect(push.headers['content-encoding']).toBe('gzip');

    // stdout has the same JSON lines: level by name, time in epoch milliseconds.
    const out = stdout.lines();
    expect(out.map((l) => l.level)).toEqual(['info', 'warn', 'error']);
    expect(out.map((l) => l.msg)).toEqual(['rpc', 'a warning', 'an error']);
    expect(typeof out[0]!.time).toBe('number');
    expect(lines.map((l) => l.line)).toEqual(stdout.text.trimEnd().split('\n'));
  });

  it('labels each line with its own service when several services in a process share one shipper', async () => {
    const loki = await receiver();
    const shared = settings(loki.url);
    const data = createLogger({
      service: 'data',
      level: 'info',
      env: 'test',
      loki: shared,
      stdout: new Capture(),
    });
    const events = createLogger({
      service: 'events',
      level: 'info',
      env: 'test',
      loki: shared,
      stdout: new Capture(),
    });
    data.info('from data');
    events.info('from events');
    data.error('data failed');
    await flushLogs();
    const byMsg = Object.fromEntries(
      loki.lines().map((l) => [(JSON.parse(l.line) as { msg: string }).msg, l.labels]),
    );
    expect(byMsg).toEqual({
      'from data': { app: 'sluice', service: 'data', env: 'test', level: 'info' },
      'from events': { app: 'sluice', service: 'events', env: 'test', level: 'info' },
      'data failed': { app: 'sluice', service: 'data', env: 'test', level: 'error' },
    });
    // One shipper: the three lines went in one push.
    expect(loki.pushes).toHaveLength(1);
  });

  it('keeps up with a steady stream of lines: full batches go out at once, nothing is dropped', async () => {
    const loki = await receiver();
    const logger = createLogger({
      service: 'data',
      level: 'info',
      env: 'test',
      loki: settings(loki.url, { batchIntervalMs: 5000, maxBufferedLines: 3000 }),
      stdout: new Capture(),
    });
    const before = await dropped();
    // 6000 lines at about 5,000 a second (50 every 10 ms): the buffer of 3000 fills in 0.6 s, well
    // before the 5 s interval, so nothing is dropped only if full batches go out at once. Paced by
    // the clock, not by event-loop turns, so a loaded machine (gzip and the push taking longer in
    // turns) does not turn it into a race.
    for (let i = 0; i < 6000; i++) {
      logger.info({ i }, 'steady');
      if (i % 50 === 49) await new Promise((resolve) => setTimeout(resolve, 10));
    }
    // Twice the buffer was written: full batches of 1000 went out without waiting for the interval.
    await flushLogs();
    expect(await dropped()).toBe(before);
    expect(loki.lines()).toHaveLength(6000);
  });

  it('never writes secrets or row data, on stdout or to Loki', async () => {
    const loki = await receiver();
    const stdout = new Capture();
    const logger = createLogger({
      service: 'data',
      level: 'info',
      env: 'test',
      loki: settings(loki.url),
      stdout,
    });
    logger.child({ token: 'tok-SECRET-0' }).info(
      {
        token: 'tok-SECRET-1',
        authorization: 'Bearer tok-SECRET-2',
        headers: { authorization: 'Bearer tok-SECRET-3' },
        config: { databaseUrl: 'postgres://app:pw-SECRET-4@db/app', password: 'pw-SECRET-5' },
        values: ['row-SECRET-6'],
        row: { title: 'row-SECRET-7' },
        body: '{"webhook":"body-SECRET-8"}',
        err: { message: 'duplicate key', detail: 'Key (email)=(row-SECRET-9) already exists.' },
        request: { table: 'posts', rows: [['row-SECRET-10']] },
        loki: { pushUrl: 'https://logs.example', basicAuth: { username: 'u', password: 'pw-SECRET-11' } },
      },
      'something happened',
    );
    await flushLogs();
    const sent = loki.pushes.map((p) => p.body).join('\n');
    expect(sent).toContain('something happened');
    expect(stdout.text).toContain('[redacted]');
    for (const text of [stdout.text, sent]) expect(text).not.toMatch(/SECRET/);
  });

  it('Loki refusing connections: log calls return at once, lines are dropped and counted, one warning on stderr', async () => {
    const dead = await startLokiReceiver();
    const url = dead.url;
    await dead.close();
    const warnings = new Capture();
    const logger = createLogger({
      service: 'data',
      level: 'info',
      env: 'test',
      loki: settings(url, { batchIntervalMs: 20, maxBufferedLines: 100 }),
      stdout: new Capture(),
      stderr: warnings,
    });
    const before = await dropped();
    const started = performance.now();
    for (let i = 0; i < 1000; i++) logger.info({ i }, 'line while Loki is down');
    expect(performance.now() - started).toBeLessThan(500);
    // Let a few pushes fail (connection refused) and be retried.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await dropped()).toBeGreaterThanOrEqual(before + 900);
    const flushStarted = performance.now();
    await flushLogs(300);
    expect(performance.now() - flushStarted).toBeLessThan(1500);
    expect(await dropped()).toBe(before + 1000);
    const warned = warnings.lines();
    expect(warned.length).toBeGreaterThanOrEqual(1);
    expect(warned.length).toBeLessThanOrEqual(3);
    expect(warned[0]).toMatchObject({ level: 'warn', component: 'loki-shipper' });
    expect(String(warned[0]!.msg)).toMatch(/dropped the \d+ oldest buffered log lines/);
  });

  it('Loki that never answers: log calls return at once, pushes time out, the buffer stays bounded', async () => {
    const stuck = await receiver('hang');
    const warnings = new Capture();
    const logger = createLogger({
      service: 'data',
      level: 'info',
      env: 'test',
      loki: settings(stuck.url, { batchIntervalMs: 20, timeoutMs: 200, maxBufferedLines: 100 }),
      stdout: new Capture(),
      stderr: warnings,
    });
    const before = await dropped();
    logger.info('first line');
    await new Promise((resolve) => setTimeout(resolve, 100)); // the first push is now stuck
    const started = performance.now();
    for (let i = 0; i < 500; i++) logger.info({ i }, 'line while Loki hangs');
    expect(performance.now() - started).toBeLessThan(500);
    expect(await dropped()).toBeGreaterThanOrEqual(before + 400);
    // The stuck push times out and is retried; warnings stay rate-limited.
    await new Promise((resolve) => setTimeout(resolve, 400));
    const flushStarted = performance.now();
    await flushLogs(300);
    expect(performance.now() - flushStarted).toBeLessThan(1500);
    expect(await dropped()).toBe(before + 501);
    expect(warnings.lines().length).toBeLessThanOrEqual(3);
    expect(warnings.text).toMatch(/Loki/);
  });

  it('Loki rejecting a push (4xx): its lines are dropped and counted at once, not retried', async () => {
    const loki = await receiver('reject');
    const warnings = new Capture();
    const logger = createLogger({
      service: 'data',
      level: 'info',
      env: 'test',
      loki: settings(loki.url, { batchIntervalMs: 20 }),
      stdout: new Capture(),
      stderr: warnings,
    });
    const rejected = async () =>
      (await logLinesDropped.get()).values.find((v) => v.labels.reason === 'rejected')?.value ?? 0;
    const before = await rejected();
    for (let i = 0; i < 5; i++) logger.info({ i }, 'refused line');
    await loki.waitFor((l) => l.line.includes('refused line'));
    await flushLogs();
    expect(await rejected()).toBe(before + 5);
    expect(loki.pushes).toHaveLength(1);
    expect(warnings.text).toContain('HTTP 400: entry too far behind');
  });

  it('delivers what was buffered when Loki comes back', async () => {
    const dead = await startLokiReceiver();
    const deadUrl = dead.url;
    await dead.close();
    const port = new URL(deadUrl).port;
    const logger = createLogger({
      service: 'data',
      level: 'info',
      env: 'test',
      loki: settings(deadUrl, { batchIntervalMs: 20 }),
      stdout: new Capture(),
      stderr: new Capture(),
    });
    logger.info('logged while Loki was down');
    await new Promise((resolve) => setTimeout(resolve, 100));
    const back = await startLokiReceiver({ port: Number(port) });
    receivers.push(back);
    // Retries back off (20 ms doubling, with jitter): the line arrives within a few seconds.
    await back.waitFor((l) => l.line.includes('logged while Loki was down'), 5000);
  });
});
