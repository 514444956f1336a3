import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWebhooksStack, TEST_JWT_SECRET, type WebhooksStack } from './helpers';
import { createSource, inboxRows, newSecret, post, sourceName } from './inbound/helpers';

// Inbox durability: a webhooks service in a child process is killed with SIGKILL the moment
// it has answered a 2xx, with requests still in flight. Every event it acknowledged is in the
// database; what it did not acknowledge, the sender retries (here: to the stack's instance),
// and nothing is stored twice.

const CHILD = fileURLToPath(new URL('./inbound/child-ingress.ts', import.meta.url));
const TSX_LOADER = import.meta.resolve('tsx');

let stack: WebhooksStack;
let child: ChildProcess | undefined;

beforeAll(async () => {
  stack = await startWebhooksStack();
});

afterAll(async () => {
  if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await stack?.close();
});

async function startChild(): Promise<{ child: ChildProcess; url: string }> {
  const proc = spawn(process.execPath, ['--import', TSX_LOADER, CHILD], {
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      DATABASE_URL: stack.db.appUrl,
      JWT_SECRET: TEST_JWT_SECRET,
      LOG_LEVEL: 'silent',
      WEBHOOKS_GRPC_ADDRESS: '127.0.0.1:0',
      WEBHOOKS_HTTP_ADDRESS: '127.0.0.1:0',
    },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  child = proc;
  const exited = once(proc, 'exit');
  const port = await Promise.race([
    new Promise<number>((resolve) =>
      proc.on('message', (m: { type?: string; httpPort?: number }) => {
        if (m.type === 'ready' && m.httpPort) resolve(m.httpPort);
      }),
    ),
    exited.then(([code]) => {
      throw new Error(`the webhooks child exited early (${code})`);
    }),
  ]);
  return { child: proc, url: `http://127.0.0.1:${port}` };
}

describe('SIGKILL right after the 2xx', () => {
  it('loses no acknowledged event and stores every retried one once', async () => {
    const secret = newSecret();
    const name = sourceName('kill');
    const id = await createSource(stack, { name, kind: 'standard-webhooks', secrets: [secret] });
    const { child: proc, url } = await startChild();
    const exited = once(proc, 'exit');
    const events = Array.from({ length: 200 }, (_, i) => {
      const body = `{"type":"kill.test","n":${i}}`;
      const msgId = `msg_kill_${i}`;
      const at = Math.floor(Date.now() / 1000);
      const headers = {
        'webhook-id': msgId,
        'webhook-timestamp': String(at),
        'webhook-signature': new Webhook(secret).sign(msgId, new Date(at * 1000), body),
      };
      return { body, headers, msgId };
    });
    let acknowledgedBeforeKill = 0;
    let killed = false;
    // 32 senders over the 200 events; the first few 2xx answers pass, then the kill lands.
    const outcomes = new Map<string, number | 'failed'>();
    let next = 0;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < events.length) {
          const event = events[next++]!;
          try {
            const answer = await post(url, `/webhooks/${name}`, event.body, event.headers);
            outcomes.set(event.msgId, answer.status);
            if (answer.status === 200 && !killed && ++acknowledgedBeforeKill >= 20) {
              killed = true;
              proc.kill('SIGKILL');
            }
          } catch {
            outcomes.set(event.msgId, 'failed');
          }
        }
      }),
    );
    await exited;
    expect(proc.signalCode).toBe('SIGKILL');
    const acknowledged = [...outcomes].filter(([, s]) => s === 200).map(([m]) => m);
    const failed = [...outcomes].filter(([, s]) => s !== 200).map(([m]) => m);
    expect(acknowledged.length).toBeGreaterThanOrEqual(20);
    expect(failed.length).toBeGreaterThan(0);
    const stored = new Set((await inboxRows(stack, id)).map((r) => r.external_id));
    for (const msgId of acknowledged) expect(stored.has(msgId), msgId).toBe(true);

    // The sender retries what was not acknowledged (some of it may have been stored already).
    for (const event of events.filter((e) => failed.includes(e.msgId))) {
      const answer = await post(stack.httpUrl, `/webhooks/${name}`, event.body, event.headers);
      expect(answer.status).toBe(200);
    }
    const rows = await inboxRows(stack, id);
    expect(rows).toHaveLength(events.length);
    expect(new Set(rows.map((r) => r.external_id)).size).toBe(events.length);
  });
});
