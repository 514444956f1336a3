import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';

// Debian puts daemons such as pgbouncer in /usr/sbin, which is not on every user's PATH.
const EXTRA_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

/** The absolute path of executable `name` on PATH (or in the sbin folders), undefined when absent. */
export function findExecutable(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean), ...EXTRA_DIRS];
  for (const dir of dirs) {
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * Says loudly, on stderr, that a test file is skipped and why, and returns the reason so the
 * caller can name its skipped test after it: a skipped infrastructure test must never read as
 * a pass.
 */
export function announceSkip(file: string, reason: string): string {
  process.stderr.write(`\n*** SKIPPED ${file}: ${reason} ***\n\n`);
  return `SKIPPED: ${reason}`;
}

/** A child process a test started, with its output kept for the failure message. */
export interface Daemon {
  readonly process: ChildProcess;
  /** Everything it wrote to stdout and stderr so far (the last 64 KiB). */
  output(): string;
  /** Resolves when it has exited, with its exit code or signal. */
  readonly exited: Promise<string>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Starts `command` as a child process for the duration of a test (never detached: it cannot
 * outlive the test run by being forgotten in another process group). `stop()` ends it.
 */
export function startDaemon(
  command: string,
  args: readonly string[],
  options: { cwd?: string } = {},
): Daemon {
  const child = spawn(command, args, { cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (chunk: Buffer) => {
    out = (out + chunk.toString()).slice(-65_536);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<string>((resolve) => {
    child.once('exit', (code, signal) => resolve(signal ?? `exit code ${code}`));
    child.once('error', (error) => resolve(`failed to start: ${error.message}`));
  });
  let done = false;
  void exited.then(() => {
    done = true;
  });
  return {
    process: child,
    output: () => out,
    exited,
    async stop(graceMs = 5_000) {
      if (done) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * Polls `probe` every `intervalMs` until it returns true, failing after `timeoutMs` with
 * `what` and, when given, `context()` (say, a daemon's output) in the message.
 */
export async function waitFor(
  what: string,
  probe: () => Promise<boolean> | boolean,
  {
    timeoutMs = 15_000,
    intervalMs = 100,
    context,
  }: { timeoutMs?: number; intervalMs?: number; context?: () => string } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      if (await probe()) return;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      const detail = last instanceof Error ? ` (last error: ${last.message})` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail}\n${context?.() ?? ''}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
