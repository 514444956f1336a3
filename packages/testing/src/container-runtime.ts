import { request } from 'node:http';
import { homedir } from 'node:os';
import path from 'node:path';

/** Where a Docker engine's API would answer: a Unix socket or a TCP host and port. */
export type DockerEndpoint =
  | { readonly kind: 'unix'; readonly socketPath: string; readonly dockerHost: string }
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number; readonly dockerHost: string };

/**
 * The Docker API endpoints to try, in order: DOCKER_HOST alone when set (`unix:///path` or
 * `tcp://host:port`; anything else, say `ssh://` or `npipe://`, is reported as unsupported),
 * otherwise the usual sockets of Docker Engine, rootless Docker and Docker Desktop.
 *
 * @throws Error naming DOCKER_HOST when it is set to a form this detection cannot use.
 */
export function dockerEndpoints(env: Readonly<Record<string, string | undefined>>): DockerEndpoint[] {
  const configured = env.DOCKER_HOST?.trim();
  if (configured) return [parseDockerHost(configured)];
  const sockets = ['/var/run/docker.sock'];
  if (env.XDG_RUNTIME_DIR) sockets.push(path.join(env.XDG_RUNTIME_DIR, 'docker.sock'));
  sockets.push(path.join(env.HOME ?? homedir(), '.docker', 'run', 'docker.sock'));
  return sockets.map((socketPath) => ({ kind: 'unix', socketPath, dockerHost: `unix://${socketPath}` }));
}

function parseDockerHost(value: string): DockerEndpoint {
  if (value.startsWith('unix://')) {
    const socketPath = value.slice('unix://'.length);
    if (socketPath) return { kind: 'unix', socketPath, dockerHost: value };
  } else if (value.startsWith('tcp://')) {
    const url = new URL(value.replace(/^tcp:/, 'http:'));
    const port = url.port ? Number(url.port) : 2375;
    return { kind: 'tcp', host: url.hostname.replace(/^\[|\]$/g, ''), port, dockerHost: value };
  }
  throw new Error(
    `DOCKER_HOST="${value}" is not a form this test setup can probe (unix:///path or tcp://host:port)`,
  );
}

/** What a probe of one endpoint found. */
export interface EngineProbe {
  readonly endpoint: DockerEndpoint;
  readonly answers: boolean;
  /** Why not, when it does not answer (refused, no such socket, timeout, a wrong reply). */
  readonly reason?: string;
}

/**
 * Asks the Docker API at `endpoint` for `GET /_ping` and says whether it answered `200 OK`.
 * Never throws and never waits longer than `timeoutMs` (a silent peer counts as no engine).
 */
export function pingDockerEngine(endpoint: DockerEndpoint, timeoutMs = 2_000): Promise<EngineProbe> {
  return new Promise((resolve) => {
    let settled = false;
    const finish = (answers: boolean, reason?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve({ endpoint, answers, ...(reason === undefined ? {} : { reason }) });
    };
    const target =
      endpoint.kind === 'unix'
        ? { socketPath: endpoint.socketPath }
        : { host: endpoint.host, port: endpoint.port };
    const req = request({ ...target, path: '/_ping', method: 'GET', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () => {
        if (res.statusCode === 200 && body.trim() === 'OK') finish(true);
        else finish(false, `GET /_ping answered ${res.statusCode} ${JSON.stringify(body.slice(0, 80))}`);
      });
      res.on('error', (error: Error) => finish(false, error.message));
    });
    const timer = setTimeout(
      () => finish(false, `no answer to GET /_ping within ${timeoutMs} ms`),
      timeoutMs,
    );
    req.on('error', (error: NodeJS.ErrnoException) => finish(false, error.code ?? error.message));
    req.end();
  });
}

/** Probes the endpoints in order; the first that answers wins. */
export async function detectDockerEngine(
  env: Readonly<Record<string, string | undefined>>,
  timeoutMs = 2_000,
): Promise<{ readonly engine?: DockerEndpoint; readonly tried: readonly EngineProbe[] }> {
  const tried: EngineProbe[] = [];
  let endpoints: DockerEndpoint[];
  try {
    endpoints = dockerEndpoints(env);
  } catch (error) {
    return {
      tried: [
        {
          endpoint: { kind: 'unix', socketPath: '', dockerHost: env.DOCKER_HOST ?? '' },
          answers: false,
          reason: (error as Error).message,
        },
      ],
    };
  }
  for (const endpoint of endpoints) {
    const probe = await pingDockerEngine(endpoint, timeoutMs);
    tried.push(probe);
    if (probe.answers) return { engine: endpoint, tried };
  }
  return { tried };
}

/** Which PostgreSQL the test run uses. */
export type TestDatabaseChoice =
  | { readonly kind: 'external'; readonly url: string }
  | { readonly kind: 'container'; readonly image: string; readonly engine: DockerEndpoint }
  | { readonly kind: 'embedded'; readonly notice: string };

/**
 * The decision, from the settings and what the engine probe found:
 * - SLUICE_TEST_DATABASE_URL: that server (with SLUICE_TEST_POSTGRES_IMAGE too: an error, the
 *   run would not know which one you meant);
 * - SLUICE_TEST_POSTGRES_IMAGE with an engine: a container of that image;
 * - SLUICE_TEST_POSTGRES_IMAGE without an engine: an error (you asked for a version we cannot
 *   give; passing on another version would read as a pass on the one you asked for);
 * - neither: the embedded PostgreSQL (the default, engine or not: no image pull, no network),
 *   with a one-line notice saying so and how to choose a version.
 *
 * @throws Error with the reason when the settings ask for something this machine cannot give.
 */
export function chooseTestDatabase(
  env: Readonly<Record<string, string | undefined>>,
  probe: { readonly engine?: DockerEndpoint; readonly tried: readonly EngineProbe[] },
): TestDatabaseChoice {
  const url = env.SLUICE_TEST_DATABASE_URL?.trim() || undefined;
  const image = env.SLUICE_TEST_POSTGRES_IMAGE?.trim() || undefined;
  const tried = probe.tried.map((t) => `${t.endpoint.dockerHost}: ${t.reason ?? 'answers'}`).join('; ');
  if (url && image)
    throw new Error(
      'SLUICE_TEST_DATABASE_URL and SLUICE_TEST_POSTGRES_IMAGE are both set: set one (a server to use, or an image to start)',
    );
  if (url) return { kind: 'external', url };
  if (image) {
    if (probe.engine) return { kind: 'container', image, engine: probe.engine };
    throw new Error(
      `SLUICE_TEST_POSTGRES_IMAGE=${image} asks for a PostgreSQL container, but no Docker engine answers (${tried}). ` +
        'Start an engine (or set DOCKER_HOST), or unset SLUICE_TEST_POSTGRES_IMAGE to test against the embedded PostgreSQL.',
    );
  }
  const notice = probe.engine
    ? `tests use the embedded PostgreSQL (a Docker engine answers at ${probe.engine.dockerHost}: set SLUICE_TEST_POSTGRES_IMAGE=postgres:16 to test another version in a container)`
    : `tests use the embedded PostgreSQL: no Docker engine answers (${tried}), so SLUICE_TEST_POSTGRES_IMAGE cannot be used here`;
  return { kind: 'embedded', notice };
}
