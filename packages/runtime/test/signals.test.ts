import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

// Ctrl-C under `npm start` reaches the process twice (from the terminal and from npm): the
// second signal must not kill it mid-drain. A real process: a ServiceProcess whose one service
// takes 300 ms to stop gets SIGTERM twice, 50 ms apart, and still stops cleanly, logging it.

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

it('a second SIGTERM during the stop is ignored; the stop completes and exits 0', async () => {
  const script = `
    import { createLogger } from '@sluice/observability';
    import { ServiceProcess } from '@sluice/runtime';
    const logger = createLogger({ service: 'test', level: 'info', env: 'test' });
    const proc = new ServiceProcess({ logger, stopTimeoutMs: 10_000 });
    proc.add({ name: 'slow', port: 0, logger, ready: () => true,
      close: () => new Promise((r) => setTimeout(r, 300)) });
    proc.handleSignals();
    process.stdout.write('ready\\n');
    setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '--eval', script], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  const ready = new Promise<void>((resolve) =>
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('ready')) resolve();
    }),
  );
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  await ready;
  child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 50));
  child.kill('SIGTERM');
  const [code, signal] = await exited;
  expect(signal).toBeNull();
  expect(code).toBe(0);
  expect(out).toContain('"msg":"already shutting down"');
  expect(out).toContain('"msg":"stopped"');
});
