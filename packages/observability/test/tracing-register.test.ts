import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

// The --import preload as `npm start` and the image use it: a separate module graph entry that
// starts tracing before the application's modules, seen by the application's own imports.

const root = fileURLToPath(new URL('../../../', import.meta.url));
const register = fileURLToPath(new URL('../src/register.ts', import.meta.url));
const app = `import { tracingEnabled } from '@sluice/observability'; console.log('enabled=' + tracingEnabled());`;

function run(env: Record<string, string>) {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('OTEL_')));
  return spawnSync(
    process.execPath,
    ['--import', 'tsx', '--import', register, '--input-type=module', '--eval', app],
    { cwd: root, env: { ...clean, ...env }, encoding: 'utf8', timeout: 30_000 },
  );
}

it('starts tracing before the application when an endpoint is set, and lets the process exit', () => {
  const started = Date.now();
  const on = run({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9' });
  expect(on.stderr).toBe('');
  expect(on.status).toBe(0);
  expect(on.stdout.trim()).toBe('enabled=true');
  expect(Date.now() - started).toBeLessThan(20_000);
});

it('does nothing without an endpoint or with OTEL_SDK_DISABLED', () => {
  expect(run({}).stdout.trim()).toBe('enabled=false');
  const disabled = run({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9', OTEL_SDK_DISABLED: 'true' });
  expect(disabled.stdout.trim()).toBe('enabled=false');
});

it('stops the process with the problems when a setting is wrong', () => {
  const bad = run({
    OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4317',
    OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
  });
  expect(bad.status).toBe(1);
  expect(bad.stderr).toMatch(
    /Invalid configuration:[\s\S]*OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported/,
  );
  expect(bad.stdout).toBe('');
});
