import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort, waitFor } from '@sluice/testing';
import { afterAll, expect, it } from 'vitest';
import { type RunningPostgres, startEmbeddedPostgres } from '../src/index';

// A SIGKILL of npm start's process group kills the postmaster and its parent together; the
// postmaster stays a zombie until PID 1 reaps it, and where PID 1 is slow to (containers, this
// sandbox) PostgreSQL took the zombie for a running postmaster and refused the data folder on the
// next start ("lock file postmaster.pid already exists"): npm start could not come back. The
// stale lock of a zombie is cleared; a live process's lock is PostgreSQL's to judge.

const isRoot = process.getuid?.() === 0;
const children: ChildProcess[] = [];

afterAll(() => {
  // The whole group: runuser's child (the sleep the shell became) holds the output pipe.
  for (const child of children) {
    try {
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

/**
 * A zombie owned by the user PostgreSQL runs as: a child its parent never waits for. The shell
 * becomes `sleep 30` (exec) before its background child ends, so nobody reaps that child.
 */
async function zombie(): Promise<number> {
  const script = 'sleep 2 & echo $!; exec sleep 60';
  const child = isRoot
    ? spawn('runuser', ['-u', 'postgres', '--', 'sh', '-c', script], {
        stdio: ['ignore', 'pipe', 'inherit'],
        detached: true,
      })
    : spawn('sh', ['-c', script], { stdio: ['ignore', 'pipe', 'inherit'], detached: true });
  children.push(child);
  const pid = await new Promise<number>((resolve) =>
    child.stdout?.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim()))),
  );
  await waitFor('the child to become a zombie', async () => stateOf(pid) === 'Z', { timeoutMs: 30_000 });
  return pid;
}

function stateOf(pid: number): string | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return undefined;
  }
}

it('starts again over the lock of a postmaster left a zombie', { timeout: 180_000 }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sluice-stale-lock-'));
  chmodSync(dir, 0o755); // as root the cluster runs as `postgres`, who must reach it
  const dataDir = path.join(dir, 'postgres');
  let running: RunningPostgres | undefined;
  try {
    running = await startEmbeddedPostgres({ dataDir, port: await freePort(), persistent: true });
    const resolved = running.dataDir;
    await running.stop();
    running = undefined;
    // The lock a killed postmaster leaves behind, naming a process that is now a zombie.
    const pid = await zombie();
    const lock = path.join(resolved, 'postmaster.pid');
    writeFileSync(lock, `${pid}\n${resolved}\n`);
    if (isRoot) chmodSync(lock, 0o644);
    running = await startEmbeddedPostgres({ dataDir, port: await freePort(), persistent: true });
    expect(Number(readFileSync(lock, 'utf8').split('\n')[0])).not.toBe(pid);
  } finally {
    await running?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
