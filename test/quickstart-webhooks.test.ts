import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { freePort, waitFor } from '@sluice/testing';
import { afterAll, describe, expect, it } from 'vitest';

// Issue 9, "done when": `npm start` also runs the webhooks service, prints its addresses with a
// curl that posts a signed demo webhook, and a demo endpoint prints what it receives. This runs
// what a new user runs: `npm start` as it comes (its JWT secret, its demo), the printed shell
// command as printed (bash, openssl, curl), and the two printed examples.

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const run = promisify(execFile);

const dir = mkdtempSync(path.join(tmpdir(), 'sluice-quickstart-webhooks-'));
// As root the cluster runs as `postgres`, who must reach the data folder (see resolveDataDir).
chmodSync(dir, 0o755);
const postmasterPid = path.join(dir, 'postgres', 'postmaster.pid');

let child: ChildProcess | undefined;
let output = '';

afterAll(async () => {
  if (child?.pid && child.exitCode === null && child.signalCode === null) {
    try {
      process.kill(-child.pid, 'SIGINT');
    } catch {
      // already gone
    }
    await new Promise((resolve) => child?.once('close', resolve));
  }
  rmSync(dir, { recursive: true, force: true });
}, 30_000);

/** The lines of the welcome from `start` (a line containing it) to the next blank line. */
function welcomeBlock(start: string): string[] {
  const lines = output.split('\n');
  const from = lines.findIndex((l) => l.includes(start));
  if (from < 0) throw new Error(`npm start printed no "${start}":\n${output}`);
  const to = lines.findIndex((l, i) => i > from && l.trim() === '');
  return lines.slice(from + 1, to < 0 ? undefined : to);
}

describe('npm start: webhooks quickstart', () => {
  it('posts the printed signed demo webhook, consumes it, and the demo endpoint prints a published message', async () => {
    const [dataPort, eventsPort, opsPort, pgPort, grpcPort, httpPort, demoPort] = await Promise.all(
      Array.from({ length: 7 }, () => freePort()),
    );
    const webhooksGrpc = `127.0.0.1:${grpcPort}`;
    child = spawn('npm', ['start'], {
      cwd: ROOT,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        SLUICE_DATA_DIR: path.join(dir, 'postgres'),
        // Ports of its own (another npm start may hold the defaults); nothing else is set.
        EMBEDDED_PG_PORT: String(pgPort),
        DATA_GRPC_ADDRESS: `127.0.0.1:${dataPort}`,
        EVENTS_GRPC_ADDRESS: `127.0.0.1:${eventsPort}`,
        WEBHOOKS_GRPC_ADDRESS: webhooksGrpc,
        WEBHOOKS_HTTP_ADDRESS: `127.0.0.1:${httpPort}`,
        WEBHOOKS_DEMO_RECEIVER_ADDRESS: `127.0.0.1:${demoPort}`,
        OPS_HTTP_ADDRESS: `127.0.0.1:${opsPort}`,
      },
    });
    const keep = (chunk: Buffer) => {
      output += chunk.toString();
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    let ended: string | undefined;
    child.once('exit', (code, signal) => {
      ended = signal ?? `exit code ${code}`;
    });
    await waitFor(
      '`npm start` to be ready (/readyz)',
      async () => {
        if (ended) throw new Error(`npm start ended (${ended})`);
        return (await fetch(`http://127.0.0.1:${opsPort}/readyz`)).status === 200;
      },
      { timeoutMs: 60_000, intervalMs: 200, context: () => `npm start output:\n${output}` },
    );
    await waitFor('the welcome', async () => output.includes('Post a signed demo webhook'), {
      timeoutMs: 10_000,
      context: () => output,
    });
    expect(existsSync(postmasterPid)).toBe(true);
    expect(output).toContain(`HTTP ingress 127.0.0.1:${httpPort}`);
    expect(output).toContain(`gRPC ${webhooksGrpc}`);

    // The printed command, run as printed: its first lines are the shell command (ending in `\`).
    const block = welcomeBlock('Post a signed demo webhook');
    const command = block.filter((l) => !l.includes('npx tsx')).join('\n');
    expect(command).toContain('curl');
    const posted = await run('bash', ['-c', command], { timeout: 20_000 });
    expect(posted.stdout).toMatch(/^HTTP\/1\.1 200/m);

    // The printed consume command gets it (consumer "demo").
    const consumeLine = block.find((l) => l.includes('webhooks-consume.ts')) ?? '';
    const token = /SLUICE_TOKEN=(\S+)/.exec(consumeLine)?.[1];
    expect(token).toBeTruthy();
    const examplesEnv = { ...process.env, SLUICE_TOKEN: token, SLUICE_WEBHOOKS_ADDRESS: webhooksGrpc };
    const consumer = spawn('npx', ['tsx', 'examples/webhooks-consume.ts'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: examplesEnv,
    });
    let consumed = '';
    consumer.stdout?.on('data', (c: Buffer) => {
      consumed += c.toString();
    });
    consumer.stderr?.on('data', (c: Buffer) => {
      consumed += c.toString();
    });
    try {
      await waitFor('the consumer to print the demo event', async () => consumed.includes('demo.hello'), {
        timeoutMs: 30_000,
        context: () => consumed,
      });
    } finally {
      consumer.kill('SIGINT');
    }
    expect(consumed).toMatch(/^demo msg_\S+ demo\.hello attempt 1:/m);

    // The printed publish command reaches the demo endpoint, which prints it under npm start.
    await run('npx', ['tsx', 'examples/webhooks-publish.ts'], {
      cwd: ROOT,
      env: examplesEnv,
      timeout: 30_000,
    });
    const printed = () =>
      output.split('\n').find((l) => l.includes('[demo endpoint]') && l.includes('invoice.paid'));
    await waitFor('the demo endpoint to print the message', async () => printed() !== undefined, {
      timeoutMs: 20_000,
      context: () => output,
    });
    // Signed per Standard Webhooks and verified by the demo endpoint, the large number intact.
    expect(printed()).toMatch(/signature verified/);
    expect(printed()).toContain('12345678901234567890');

    // Ctrl-C (SIGINT to the process group, as a terminal sends it): the launcher drains and logs
    // "stopped", and everything ends, the embedded PostgreSQL included. (npm itself ends by the
    // signal at once; the output closes when the launcher has exited.)
    const closed = new Promise<void>((resolve) => child?.once('close', () => resolve()));
    process.kill(-(child.pid as number), 'SIGINT');
    await closed;
    expect(output).toMatch(/"msg":"stopped"/);
    await waitFor('the embedded PostgreSQL to stop', async () => !existsSync(postmasterPid), {
      timeoutMs: 15_000,
      context: () => output,
    });
  }, 150_000);
});
