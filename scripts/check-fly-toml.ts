// `npm run check` step: fly.toml must give the services what they need. Parses fly.toml (and the
// Dockerfile it names) and checks: every service of the launcher runs in exactly one process
// group, each group's command starts dist/main.js with the OpenTelemetry preload and its
// SLUICE_SERVICES; each service's gRPC port is a [[services]] internal_port of its group (TLS with
// ALPN h2 at the edge, h2c inside) and listens on all interfaces; HTTP checks reach /healthz and
// /readyz on the ops port of every group; the release command runs the migrations; kill_timeout
// covers the drain; an HTTP listener (the webhooks ingress) has an HTTPS [[services]] of its own. Usage: tsx scripts/check-fly-toml.ts [path/to/fly.toml]; exits 1 on a problem.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { loadLauncherConfig } from '@sluice/all';
import { parse } from 'smol-toml';

/** The environment variable holding each service's gRPC address (host:port). */
const ADDRESS_SETTING: Record<string, string> = {
  data: 'DATA_GRPC_ADDRESS',
  events: 'EVENTS_GRPC_ADDRESS',
  webhooks: 'WEBHOOKS_GRPC_ADDRESS',
};
/** Services with an HTTP listener besides gRPC, and its address setting. */
const HTTP_SETTING: Record<string, string> = {
  webhooks: 'WEBHOOKS_HTTP_ADDRESS',
};
const OPS_SETTING = 'OPS_HTTP_ADDRESS';
const DEFAULT_SHUTDOWN_GRACE_MS = 10_000;
/** Time kill_timeout must leave after the drain grace: closing pools, flushing logs and spans. */
const CLOSE_BUDGET_MS = 5_000;
const ALL_INTERFACES = new Set(['0.0.0.0', '[::]', '::']);

type Table = Record<string, unknown>;

const isTable = (v: unknown): v is Table => typeof v === 'object' && v !== null && !Array.isArray(v);
const tables = (v: unknown): Table[] => (Array.isArray(v) ? v.filter(isTable) : isTable(v) ? [v] : []);
const strings = (v: unknown): string[] =>
  Array.isArray(v) ? v.filter((s): s is string => typeof s === 'string') : [];

/** Seconds in a fly.toml duration: a number (seconds) or "30s", "2m", "1m30s", "500ms". */
export function durationMs(value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isFinite(value)) return value * 1000;
  if (typeof value !== 'string') return undefined;
  const parts = [...value.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== value.trim()) return undefined;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;
  return parts.reduce((sum, p) => sum + Number(p[1]) * unit[p[2] as keyof typeof unit], 0);
}

/** ENV settings of the Dockerfile's last stage (the image that runs). */
export function dockerfileEnv(dockerfile: string): Record<string, string> {
  const lines = dockerfile.replace(/\\\r?\n/g, ' ').split(/\r?\n/);
  const lastFrom = lines.map((l) => /^\s*FROM\s/i.test(l)).lastIndexOf(true);
  const env: Record<string, string> = {};
  for (const line of lines.slice(lastFrom + 1)) {
    const m = /^\s*ENV\s+(.*)$/i.exec(line);
    if (!m) continue;
    for (const pair of (m[1] as string).matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("([^"]*)"|\S*)/g)) {
      env[pair[1] as string] = pair[3] ?? (pair[2] as string);
    }
  }
  return env;
}

function splitAddress(address: string): { host: string; port: number } | undefined {
  const m = /^(\[[^\]]*\]|[^:]*):(\d{1,5})$/.exec(address);
  return m ? { host: m[1] as string, port: Number(m[2]) } : undefined;
}

/** `env A=1 B=2 node …` → the assignments and the rest of the command. */
function parseCommand(command: string): { env: Record<string, string>; argv: string[] } {
  const words = command.trim().split(/\s+/);
  const env: Record<string, string> = {};
  let i = 0;
  if (words[0] === 'env') {
    i = 1;
    for (; i < words.length && /^[A-Za-z_][A-Za-z0-9_]*=/.test(words[i] as string); i++) {
      const [name, ...value] = (words[i] as string).split('=');
      env[name as string] = value.join('=');
    }
  }
  return { env, argv: words.slice(i) };
}

export interface FlyCheckInput {
  /** fly.toml's text. */
  readonly flyToml: string;
  /** The text of the Dockerfile fly.toml names, or undefined when that file does not exist. */
  readonly dockerfile: string | undefined;
  /** The services the launcher runs (SERVICE_NAMES of services/all). */
  readonly services: readonly string[];
}

/** Every problem found in fly.toml for these services; empty when it is fine. */
export function checkFlyConfig({ flyToml, dockerfile, services }: FlyCheckInput): string[] {
  const problems: string[] = [];
  let fly: Table;
  try {
    fly = parse(flyToml) as Table;
  } catch (error) {
    return [`fly.toml does not parse: ${error instanceof Error ? error.message : String(error)}`];
  }

  if (typeof fly.app !== 'string' || fly.app === '') problems.push('app must name the Fly app');
  if (typeof fly.primary_region !== 'string') problems.push('primary_region must be set');

  const build = isTable(fly.build) ? fly.build : {};
  if (typeof build.dockerfile !== 'string') problems.push('[build] dockerfile must name the Dockerfile');
  else if (dockerfile === undefined) problems.push(`[build] dockerfile ${build.dockerfile} does not exist`);

  const env: Record<string, string> = { ...dockerfileEnv(dockerfile ?? '') };
  for (const [name, value] of Object.entries(isTable(fly.env) ? fly.env : {})) env[name] = String(value);

  const deploy = isTable(fly.deploy) ? fly.deploy : {};
  const release = typeof deploy.release_command === 'string' ? deploy.release_command : '';
  if (!/\bdist\/migrate\.js\s+up\b/.test(release))
    problems.push('[deploy] release_command must run the migrations: node dist/migrate.js up');

  const graceMs = env.SHUTDOWN_GRACE_MS ? Number(env.SHUTDOWN_GRACE_MS) : DEFAULT_SHUTDOWN_GRACE_MS;
  const killMs = fly.kill_timeout === undefined ? 5_000 : durationMs(fly.kill_timeout);
  if (killMs === undefined) problems.push(`kill_timeout is not a duration: ${String(fly.kill_timeout)}`);
  else if (killMs < graceMs + CLOSE_BUDGET_MS)
    problems.push(
      `kill_timeout (${killMs / 1000} s) must cover SHUTDOWN_GRACE_MS (${graceMs / 1000} s) plus ${CLOSE_BUDGET_MS / 1000} s to close`,
    );
  if (fly.kill_signal !== undefined && fly.kill_signal !== 'SIGTERM' && fly.kill_signal !== 'SIGINT')
    problems.push(
      `kill_signal must be SIGTERM or SIGINT (the launcher drains on those), got ${String(fly.kill_signal)}`,
    );

  // Process groups: which services each runs.
  const groups = new Map<string, { services: string[]; env: Record<string, string> }>();
  const processes = isTable(fly.processes) ? fly.processes : {};
  if (Object.keys(processes).length === 0) problems.push('[processes] must define one group per service');
  for (const [group, command] of Object.entries(processes)) {
    if (typeof command !== 'string') {
      problems.push(`[processes] ${group} must be a command`);
      continue;
    }
    const parsed = parseCommand(command);
    const runs = (parsed.env.SLUICE_SERVICES ?? env.SLUICE_SERVICES ?? services.join(','))
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
    for (const name of runs)
      if (!services.includes(name)) problems.push(`[processes] ${group} runs an unknown service "${name}"`);
    const argv = parsed.argv.join(' ');
    if (!/^node\b.*\s--import\s+\.\/dist\/register\.js\s.*\bdist\/main\.js$/.test(argv))
      problems.push(
        `[processes] ${group} must run node --import ./dist/register.js dist/main.js (the OpenTelemetry preload first)`,
      );
    groups.set(group, { services: runs, env: { ...env, ...parsed.env } });
  }
  for (const name of services) {
    const owners = [...groups].filter(([, g]) => g.services.includes(name)).map(([group]) => group);
    if (owners.length !== 1)
      problems.push(
        `service ${name} must run in exactly one process group (SLUICE_SERVICES), runs in ${owners.length}`,
      );
  }

  // gRPC services: one [[services]] per service, on its group, at its port, TLS + ALPN h2.
  const flyServices = tables(fly.services);
  for (const s of flyServices) {
    if (tables(s.http_checks).length > 0)
      problems.push(
        `[[services]] internal_port ${String(s.internal_port)}: http_checks go to the gRPC port; use top-level [checks] on the ops port`,
      );
  }
  for (const [group, g] of groups) {
    for (const name of g.services) {
      const setting = ADDRESS_SETTING[name];
      if (!setting) {
        problems.push(
          `the check does not know the address setting of service ${name}: add it to ADDRESS_SETTING`,
        );
        continue;
      }
      const address = g.env[setting] ? splitAddress(g.env[setting]) : undefined;
      if (!address) {
        problems.push(`${setting} must be set to host:port in [env] or the Dockerfile (group ${group})`);
        continue;
      }
      if (!ALL_INTERFACES.has(address.host))
        problems.push(`${setting} must listen on all interfaces (0.0.0.0 or [::]), got ${g.env[setting]}`);
      const matching = flyServices.filter(
        (s) => s.internal_port === address.port && strings(s.processes).includes(group),
      );
      if (matching.length !== 1) {
        problems.push(
          `service ${name} (group ${group}) needs one [[services]] with processes = ["${group}"] and internal_port = ${address.port}, found ${matching.length}`,
        );
        continue;
      }
      const svc = matching[0] as Table;
      if (svc.protocol !== 'tcp') problems.push(`[[services]] ${name}: protocol must be "tcp"`);
      const ports = tables(svc.ports);
      if (ports.length === 0) problems.push(`[[services]] ${name}: needs a [[services.ports]] entry`);
      for (const port of ports) {
        const handlers = strings(port.handlers);
        const alpn = strings(isTable(port.tls_options) ? port.tls_options.alpn : undefined);
        if (handlers.length !== 1 || handlers[0] !== 'tls' || !alpn.includes('h2'))
          problems.push(
            `[[services]] ${name} port ${String(port.port)}: gRPC needs handlers = ["tls"] with tls_options.alpn = ["h2"] (h2c to the service)`,
          );
      }
    }
  }

  // HTTP listeners (the webhooks ingress): all interfaces, a [[services]] with TLS and HTTP handlers.
  for (const [group, g] of groups) {
    for (const name of g.services) {
      const setting = HTTP_SETTING[name];
      if (!setting) continue;
      const address = g.env[setting] ? splitAddress(g.env[setting]) : undefined;
      if (!address) {
        problems.push(`${setting} must be set to host:port in [env] or the Dockerfile (group ${group})`);
        continue;
      }
      if (!ALL_INTERFACES.has(address.host))
        problems.push(`${setting} must listen on all interfaces (0.0.0.0 or [::]), got ${g.env[setting]}`);
      const matching = flyServices.filter(
        (s) => s.internal_port === address.port && strings(s.processes).includes(group),
      );
      const handlers = matching.flatMap((s) => tables(s.ports)).map((p) => strings(p.handlers));
      if (matching.length !== 1 || !handlers.some((h) => h.includes('tls') && h.includes('http')))
        problems.push(
          `service ${name} (group ${group}) needs one [[services]] with processes = ["${group}"], internal_port = ${address.port} and a port with handlers = ["tls", "http"]`,
        );
    }
  }

  // Health: HTTP checks on the ops listener, /healthz and /readyz, for every group.
  const checks = isTable(fly.checks) ? Object.values(fly.checks).filter(isTable) : [];
  for (const [group, g] of groups) {
    const ops = g.env[OPS_SETTING] ? splitAddress(g.env[OPS_SETTING]) : undefined;
    if (!ops) {
      problems.push(`${OPS_SETTING} must be set to host:port in [env] or the Dockerfile (group ${group})`);
      continue;
    }
    if (!ALL_INTERFACES.has(ops.host))
      problems.push(
        `${OPS_SETTING} must listen on all interfaces for Fly's checks, got ${g.env[OPS_SETTING]}`,
      );
    for (const checkPath of ['/healthz', '/readyz']) {
      const found = checks.some(
        (c) =>
          c.type === 'http' &&
          c.port === ops.port &&
          c.path === checkPath &&
          (c.processes === undefined || strings(c.processes).includes(group)),
      );
      if (!found)
        problems.push(
          `group ${group} needs a [checks] entry: type = "http", port = ${ops.port}, path = "${checkPath}"`,
        );
    }
  }
  return problems;
}

/** Reads fly.toml (and its Dockerfile) at `file` and checks it. */
export function checkFlyToml(file: string): string[] {
  const flyToml = readFileSync(file, 'utf8');
  let dockerfile: string | undefined;
  try {
    const build = (parse(flyToml) as Table).build;
    const name = isTable(build) && typeof build.dockerfile === 'string' ? build.dockerfile : 'Dockerfile';
    const dockerPath = path.resolve(path.dirname(file), name);
    dockerfile = existsSync(dockerPath) ? readFileSync(dockerPath, 'utf8') : undefined;
  } catch {
    // checkFlyConfig reports the parse error.
  }
  const root = fileURLToPath(new URL('../', import.meta.url));
  const services = loadLauncherConfig({}, root).services;
  return checkFlyConfig({ flyToml, dockerfile, services });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const file = path.resolve(process.argv[2] ?? fileURLToPath(new URL('../fly.toml', import.meta.url)));
  const problems = checkFlyToml(file);
  if (problems.length > 0) {
    process.stderr.write(`${path.relative(process.cwd(), file)}:\n  - ${problems.join('\n  - ')}\n`);
    process.exitCode = 1;
  } else {
    process.stdout.write(`check-fly-toml: ${path.relative(process.cwd(), file)} ok\n`);
  }
}
