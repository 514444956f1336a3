import { mkdtempSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  chooseTestDatabase,
  type DockerEndpoint,
  detectDockerEngine,
  dockerEndpoints,
  pingDockerEngine,
} from '../src/container-runtime';
import { freePort } from '../src/global-setup';

// How the test setup decides between a Testcontainers PostgreSQL and the embedded one. Only the
// detection is exercised here, against real sockets: a closed port, a missing socket, a peer that
// never answers, and a tiny fake Docker API on a Unix socket. No container is started (no engine
// runs on this machine or in CI), and nothing here pretends one was.

let dir: string;
const servers: (Server | NetServer)[] = [];
const sockets = new Set<Socket>();

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'sluice-docker-probe-'));
});

afterAll(async () => {
  for (const s of sockets) s.destroy();
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  rmSync(dir, { recursive: true, force: true });
});

/** An HTTP server on a Unix socket in the temp dir, answering every request with `status` and `body`. */
async function fakeDockerApi(
  name: string,
  status: number,
  body: string,
): Promise<{ socketPath: string; paths: string[] }> {
  const socketPath = path.join(dir, name);
  const paths: string[] = [];
  const server = createHttpServer((req, res) => {
    paths.push(`${req.method} ${req.url}`);
    res.writeHead(status, { 'content-type': 'text/plain' });
    res.end(body);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return { socketPath, paths };
}

const unix = (socketPath: string): DockerEndpoint => ({
  kind: 'unix',
  socketPath,
  dockerHost: `unix://${socketPath}`,
});

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const start = performance.now();
  const value = await fn();
  return { value, ms: performance.now() - start };
}

describe('where the Docker API is looked for', () => {
  it('DOCKER_HOST alone when set (unix or tcp), the usual sockets otherwise; other forms are refused', () => {
    expect(dockerEndpoints({ DOCKER_HOST: 'unix:///run/user/1000/docker.sock' })).toEqual([
      unix('/run/user/1000/docker.sock'),
    ]);
    expect(dockerEndpoints({ DOCKER_HOST: 'tcp://127.0.0.1:2376' })).toEqual([
      { kind: 'tcp', host: '127.0.0.1', port: 2376, dockerHost: 'tcp://127.0.0.1:2376' },
    ]);
    expect(dockerEndpoints({ DOCKER_HOST: 'tcp://docker.internal' })[0]).toMatchObject({ port: 2375 });
    expect(
      dockerEndpoints({ XDG_RUNTIME_DIR: '/run/user/7', HOME: '/home/u' }).map((e) => e.dockerHost),
    ).toEqual([
      'unix:///var/run/docker.sock',
      'unix:///run/user/7/docker.sock',
      'unix:///home/u/.docker/run/docker.sock',
    ]);
    expect(() => dockerEndpoints({ DOCKER_HOST: 'ssh://me@host' })).toThrow(/DOCKER_HOST="ssh:\/\/me@host"/);
  });
});

describe('whether an engine answers (real sockets, bounded)', () => {
  it('a closed loopback port: no engine, refused at once', async () => {
    const port = await freePort(); // bound and released: nothing listens there now
    const { value, ms } = await timed(() =>
      pingDockerEngine({ kind: 'tcp', host: '127.0.0.1', port, dockerHost: `tcp://127.0.0.1:${port}` }),
    );
    expect(value).toMatchObject({ answers: false, reason: 'ECONNREFUSED' });
    expect(ms).toBeLessThan(1_000);
  });

  it('a Unix socket path that does not exist: no engine, at once', async () => {
    const { value, ms } = await timed(() => pingDockerEngine(unix(path.join(dir, 'missing.sock'))));
    expect(value).toMatchObject({ answers: false, reason: 'ENOENT' });
    expect(ms).toBeLessThan(1_000);
  });

  it('a peer that accepts and never answers: no engine, after the timeout and no later', async () => {
    const socketPath = path.join(dir, 'silent.sock');
    const silent = createNetServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => {});
    });
    servers.push(silent);
    await new Promise<void>((resolve) => silent.listen(socketPath, resolve));
    const { value, ms } = await timed(() => pingDockerEngine(unix(socketPath), 300));
    expect(value).toMatchObject({ answers: false, reason: 'no answer to GET /_ping within 300 ms' });
    expect(ms).toBeGreaterThanOrEqual(290);
    expect(ms).toBeLessThan(1_500);
  });

  it('a fake Docker API answering GET /_ping with OK: the engine answers', async () => {
    const api = await fakeDockerApi('docker.sock', 200, 'OK');
    const probe = await detectDockerEngine({ DOCKER_HOST: `unix://${api.socketPath}` });
    expect(probe.engine).toEqual(unix(api.socketPath));
    expect(probe.tried).toEqual([{ endpoint: unix(api.socketPath), answers: true }]);
    expect(api.paths).toEqual(['GET /_ping']);
  });

  it('an HTTP server that is not a Docker engine: no engine, with what it said', async () => {
    const api = await fakeDockerApi('not-docker.sock', 404, 'page not found');
    const probe = await pingDockerEngine(unix(api.socketPath));
    expect(probe).toMatchObject({ answers: false, reason: 'GET /_ping answered 404 "page not found"' });
  });
});

describe('which PostgreSQL the run uses', () => {
  const engine = unix('/var/run/docker.sock');
  const withEngine = { engine, tried: [{ endpoint: engine, answers: true }] };
  const noEngine = { tried: [{ endpoint: engine, answers: false, reason: 'ENOENT' }] };

  it('no image asked for: the embedded server, engine or not, saying why', () => {
    const without = chooseTestDatabase({}, noEngine);
    expect(without.kind).toBe('embedded');
    expect(without.kind === 'embedded' && without.notice).toBe(
      'tests use the embedded PostgreSQL: no Docker engine answers (unix:///var/run/docker.sock: ENOENT), so SLUICE_TEST_POSTGRES_IMAGE cannot be used here',
    );
    const withIt = chooseTestDatabase({ SLUICE_TEST_POSTGRES_IMAGE: ' ' }, withEngine);
    expect(withIt.kind === 'embedded' && withIt.notice).toMatch(
      /^tests use the embedded PostgreSQL \(a Docker engine answers at unix:\/\/\/var\/run\/docker.sock: set SLUICE_TEST_POSTGRES_IMAGE=postgres:16/,
    );
  });

  it('an image with an engine: a container of that image on that engine', () => {
    expect(chooseTestDatabase({ SLUICE_TEST_POSTGRES_IMAGE: 'postgres:16' }, withEngine)).toEqual({
      kind: 'container',
      image: 'postgres:16',
      engine,
    });
  });

  it('an image without an engine: the run fails, naming the image and what was tried', () => {
    expect(() => chooseTestDatabase({ SLUICE_TEST_POSTGRES_IMAGE: 'postgres:16' }, noEngine)).toThrow(
      'SLUICE_TEST_POSTGRES_IMAGE=postgres:16 asks for a PostgreSQL container, but no Docker engine answers (unix:///var/run/docker.sock: ENOENT)',
    );
  });

  it('SLUICE_TEST_DATABASE_URL: that server; with an image as well: refused', () => {
    const url = 'postgres://postgres@127.0.0.1:5432/postgres';
    expect(chooseTestDatabase({ SLUICE_TEST_DATABASE_URL: url }, noEngine)).toEqual({
      kind: 'external',
      url,
    });
    expect(() =>
      chooseTestDatabase(
        { SLUICE_TEST_DATABASE_URL: url, SLUICE_TEST_POSTGRES_IMAGE: 'postgres:16' },
        withEngine,
      ),
    ).toThrow(/both set/);
  });

  it('end to end as the global setup runs it: an image and a DOCKER_HOST nobody serves fail fast', async () => {
    const port = await freePort();
    const env = { SLUICE_TEST_POSTGRES_IMAGE: 'postgres:16', DOCKER_HOST: `tcp://127.0.0.1:${port}` };
    const { value: probe, ms } = await timed(() => detectDockerEngine(env));
    expect(ms).toBeLessThan(2_500);
    expect(() => chooseTestDatabase(env, probe)).toThrow(
      `SLUICE_TEST_POSTGRES_IMAGE=postgres:16 asks for a PostgreSQL container, but no Docker engine answers (tcp://127.0.0.1:${port}: ECONNREFUSED)`,
    );
  });
});
