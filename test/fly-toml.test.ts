import { execFile } from 'node:child_process';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkFlyConfig, dockerfileEnv, durationMs } from '../scripts/check-fly-toml';

// fly.toml is checked by `npm run check` (scripts/check-fly-toml.ts): the real file passes, and a
// copy broken in each way the services care about fails with a message naming the problem.

const root = path.resolve(import.meta.dirname, '..');
const run = promisify(execFile);
const tsx = path.join(root, 'node_modules/.bin/tsx');
const script = path.join(root, 'scripts/check-fly-toml.ts');
const services = ['data', 'events', 'webhooks'];
let flyToml: string;
let dockerfile: string;
let scratch: string;

beforeAll(async () => {
  flyToml = await readFile(path.join(root, 'fly.toml'), 'utf8');
  dockerfile = await readFile(path.join(root, 'Dockerfile'), 'utf8');
  scratch = await mkdtemp(path.join(tmpdir(), 'sluice-fly-toml-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** fly.toml with `from` replaced by `to` (which must occur). */
function broken(from: string | RegExp, to: string): string {
  const text = flyToml.replace(from, to);
  expect(text, `fly.toml contains ${String(from)}`).not.toBe(flyToml);
  return text;
}

const check = (text: string, docker: { text: string | undefined } = { text: dockerfile }) =>
  checkFlyConfig({ flyToml: text, dockerfile: docker.text, services });

describe('npm run check: fly.toml', () => {
  it('passes on the repository fly.toml (as a process, exit 0)', async () => {
    const { stdout } = await run(tsx, [script], { cwd: root });
    expect(stdout).toMatch(/fly\.toml ok/);
  });

  it('fails on a broken copy (as a process, exit 1, the problem on stderr)', async () => {
    await writeFile(path.join(scratch, 'fly.toml'), broken('kill_timeout = 30', 'kill_timeout = 5'));
    await copyFile(path.join(root, 'Dockerfile'), path.join(scratch, 'Dockerfile'));
    const failed = await run(tsx, [script, path.join(scratch, 'fly.toml')], { cwd: root }).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(failed?.code).toBe(1);
    expect(failed?.stderr).toMatch(/kill_timeout \(5 s\) must cover SHUTDOWN_GRACE_MS \(10 s\)/);
  });

  it('finds nothing wrong with the real file', () => {
    expect(check(flyToml)).toEqual([]);
  });

  it.each([
    ['no release command', /release_command = .*\n/, '', /release_command must run the migrations/],
    [
      'a process group missing',
      /\n\s*events = "env SLUICE_SERVICES=events[^\n]*/,
      '',
      /service events must run in exactly one/,
    ],
    [
      'a service in two groups',
      'SLUICE_SERVICES=events',
      'SLUICE_SERVICES=data,events',
      /service data must run in exactly one process group/,
    ],
    ['an unknown service', 'SLUICE_SERVICES=events', 'SLUICE_SERVICES=webhook', /unknown service "webhook"/],
    [
      'no preload',
      'env SLUICE_SERVICES=data node --enable-source-maps --experimental-async-context-frame --import ./dist/register.js',
      'env SLUICE_SERVICES=data node',
      /--import \.\/dist\/register\.js/,
    ],
    [
      'internal port not the service address',
      'internal_port = 50051',
      'internal_port = 5005',
      /internal_port = 50051, found 0/,
    ],
    [
      'service address on loopback',
      'DATA_GRPC_ADDRESS = "[::]:50051"',
      'DATA_GRPC_ADDRESS = "127.0.0.1:50051"',
      /DATA_GRPC_ADDRESS must listen on all interfaces/,
    ],
    [
      'webhooks ingress without an HTTP handler',
      'handlers = ["tls", "http"]',
      'handlers = ["tls"]',
      /internal_port = 8080 and a port with handlers = \["tls", "http"\]/,
    ],
    [
      'webhooks ingress on loopback',
      'WEBHOOKS_HTTP_ADDRESS = "[::]:8080"',
      'WEBHOOKS_HTTP_ADDRESS = "127.0.0.1:8080"',
      /WEBHOOKS_HTTP_ADDRESS must listen on all interfaces/,
    ],
    ['no ALPN h2', /alpn = \["h2"\]/, 'alpn = ["http/1.1"]', /tls_options\.alpn = \["h2"\]/],
    [
      'an http handler in front of gRPC',
      'handlers = ["tls"]',
      'handlers = ["tls", "http"]',
      /handlers = \["tls"\]/,
    ],
    [
      'readiness on another port',
      /port = 9464\n(\s+)method = "get"\n(\s+)path = "\/readyz"/,
      'port = 9465\n$1method = "get"\n$2path = "/readyz"',
      /path = "\/readyz"/,
    ],
    ['no liveness check', 'path = "/healthz"', 'path = "/"', /path = "\/healthz"/],
    [
      'ops listener on loopback',
      'OPS_HTTP_ADDRESS = "[::]:9464"',
      'OPS_HTTP_ADDRESS = "127.0.0.1:9464"',
      /OPS_HTTP_ADDRESS must listen on all interfaces/,
    ],
    [
      'kill_timeout below the drain',
      'SHUTDOWN_GRACE_MS = "10000"',
      'SHUTDOWN_GRACE_MS = "60000"',
      /kill_timeout \(30 s\) must cover SHUTDOWN_GRACE_MS \(60 s\)/,
    ],
    ['not TOML', /^app = /m, 'app = = ', /does not parse/],
  ] as const)('fails with %s', (_what, from, to, message) => {
    const problems = check(broken(from, to));
    expect(problems.join('\n')).toMatch(message);
  });

  it('fails when the Dockerfile is missing', () => {
    expect(check(flyToml, { text: undefined }).join('\n')).toMatch(/dockerfile Dockerfile does not exist/);
  });

  it('reads durations and the last stage of the Dockerfile', () => {
    expect([durationMs(30), durationMs('30s'), durationMs('1m30s'), durationMs('250ms')]).toEqual([
      30_000, 30_000, 90_000, 250,
    ]);
    expect(durationMs('soon')).toBeUndefined();
    const env = dockerfileEnv('FROM a\nENV A=1\nFROM b\nENV B=2 \\\n    C="x y"\n');
    expect(env).toEqual({ B: '2', C: 'x y' });
  });
});
