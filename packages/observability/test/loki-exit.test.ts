import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type LokiReceiver, startLokiReceiver } from '@sluice/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// A Loki that never answers must not hold a process open: shipping's timers and sockets are
// unref'd, and flushLogs waits no longer than it is told. Each case runs a real Node process
// whose push hangs with a 60 s timeout, and times how long the process takes to end.

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const run = promisify(execFile);

let stuck: LokiReceiver;
beforeAll(async () => {
  stuck = await startLokiReceiver({ mode: 'hang' });
});
afterAll(() => stuck?.close());

async function timeProcess(flushMs: number | undefined): Promise<{ ms: number; stdout: string }> {
  const settings = {
    pushUrl: `${stuck.url}/loki/api/v1/push`,
    basicAuth: undefined,
    tenantId: undefined,
    batchIntervalMs: 10,
    timeoutMs: 60_000,
    maxBufferedLines: 1000,
    gzip: true,
  };
  const script = `
    import { createLogger, flushLogs } from '@sluice/observability';
    const logger = createLogger({ service: 'exit', level: 'info', env: 'test', loki: ${JSON.stringify(settings)} });
    logger.info('a line for a stuck Loki');
    await new Promise((resolve) => setTimeout(resolve, 200));
    logger.info('started: ' + Date.now());
    ${flushMs === undefined ? '' : `await flushLogs(${flushMs});`}
    logger.info('ending: ' + Date.now());
  `;
  const { stdout } = await run(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '--eval', script],
    {
      cwd: ROOT,
      timeout: 30_000,
    },
  );
  // From the moment the push hangs to the process's end (excluding tsx start-up).
  const started = Number(/started: (\d+)/.exec(stdout)?.[1]);
  return { ms: Date.now() - started, stdout };
}

describe('process exit with Loki stuck', () => {
  it('a process that does not flush ends as soon as its work is done', async () => {
    const { ms, stdout } = await timeProcess(undefined);
    expect(stdout).toContain('a line for a stuck Loki');
    expect(ms).toBeLessThan(5000);
  });

  it('flushLogs gives up after its timeout and the process ends', async () => {
    const { ms, stdout } = await timeProcess(500);
    expect(stdout).toContain('ending: ');
    expect(ms).toBeGreaterThanOrEqual(500);
    expect(ms).toBeLessThan(5000);
  });
});
