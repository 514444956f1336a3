import net from 'node:net';
import pg from 'pg';
import pino from 'pino';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadWebhooksConfig } from '../src/config';
import { type Ingress, startIngress } from '../src/inbound/ingress';
import { startWebhooksStack, TEST_JWT_SECRET, type WebhooksStack } from './helpers';
import { createSource, newSecret, post, sourceName } from './inbound/helpers';

// Outside review: bodies are read whole before their signature can be checked, so what they may
// hold in memory at once must be bounded, or a few thousand slow requests to a known source
// (no secret needed) each hold their full body limit.

let stack: WebhooksStack;
let pool: pg.Pool;
let ingress: Ingress;
const secret = newSecret();
const name = sourceName('memory');
const BUDGET = 256 * 1024;

beforeAll(async () => {
  stack = await startWebhooksStack();
  await createSource(stack, { name, kind: 'standard-webhooks', secrets: [secret] });
  pool = new pg.Pool({ connectionString: stack.db.appUrl, max: 4 });
  const config = loadWebhooksConfig({
    DATABASE_URL: stack.db.appUrl,
    JWT_SECRET: TEST_JWT_SECRET,
    WEBHOOKS_HTTP_ADDRESS: '127.0.0.1:0',
  });
  ingress = await startIngress({
    pool,
    logger: pino({ level: 'silent' }),
    catalog: () => {
      throw new Error('no catalog in this test');
    },
    settings: config.inbound,
    maxBufferedBytes: BUDGET,
  });
}, 120_000);

afterAll(async () => {
  await ingress?.close();
  await pool?.end();
  await stack?.close();
});

/** A request that declares `declared` bytes, sends `sent` of them, and waits (a slow sender). */
function stalled(declared: number, sent: number): Promise<{ socket: net.Socket; answer: Promise<string> }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(ingress.port, '127.0.0.1', () => {
      socket.write(
        `POST /webhooks/${name} HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: ${declared}\r\n\r\n`,
      );
      socket.write(Buffer.alloc(sent, 0x20), () => resolve({ socket, answer }));
    });
    let text = '';
    const answer = new Promise<string>((done) => {
      socket.on('data', (d) => {
        text += d.toString('latin1');
      });
      socket.on('close', () => done(text));
      socket.on('error', () => done(text));
    });
    socket.on('error', reject);
  });
}

function signed(body: string) {
  const id = `msg_${Math.random().toString(36).slice(2)}`;
  const at = Math.floor(Date.now() / 1000);
  return {
    'webhook-id': id,
    'webhook-timestamp': String(at),
    'webhook-signature': new Webhook(secret).sign(id, new Date(at * 1000), body),
  };
}

describe('bodies in flight', () => {
  it('hold at most the budget: past it a request is refused with 503 and Retry-After, and the budget comes back', async () => {
    // Three slow senders holding 100 KiB each (under the 1 MiB body limit): the third passes 256 KiB.
    const held = [];
    for (let i = 0; i < 2; i++) held.push(await stalled(1024 * 1024, 100 * 1024));
    const third = await stalled(1024 * 1024, 100 * 1024);
    const refused = await Promise.race([
      third.answer,
      new Promise<string>((r) => setTimeout(() => r('no answer'), 10_000)),
    ]);
    expect(refused).toMatch(/^HTTP\/1\.1 503 /);
    expect(refused).toMatch(/retry-after: \d+/i);
    expect(refused).toContain('"code":"overloaded"');
    // A small request still fits beside the two held bodies.
    const body = '{"type":"small"}';
    expect(
      (await post(`http://127.0.0.1:${ingress.port}`, `/webhooks/${name}`, body, signed(body))).status,
    ).toBe(200);
    // The slow senders give up: what they held is released.
    for (const h of held) h.socket.destroy();
    await new Promise((r) => setTimeout(r, 200));
    const big = JSON.stringify({ type: 'big', s: 'x'.repeat(200 * 1024) });
    expect(
      (await post(`http://127.0.0.1:${ingress.port}`, `/webhooks/${name}`, big, signed(big))).status,
    ).toBe(200);
    const again = JSON.stringify({ type: 'again', s: 'y'.repeat(200 * 1024) });
    expect(
      (await post(`http://127.0.0.1:${ingress.port}`, `/webhooks/${name}`, again, signed(again))).status,
    ).toBe(200);
  }, 60_000);
});
