import { createHmac, randomUUID } from 'node:crypto';
import net from 'node:net';
import { webhooks } from '@sluice/proto';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACME, startWebhooksStack, type WebhooksStack } from './helpers';
import { createSource, inboxRows, newSecret, post, sourceName } from './inbound/helpers';

// Outside review of POST /webhooks/{source}: requests as an attacker or a broken client would
// write them, on raw sockets where fetch would tidy them up.

let stack: WebhooksStack;
const secret = newSecret();
const name = sourceName('review');
let sourceId: string;

beforeAll(async () => {
  stack = await startWebhooksStack();
  sourceId = await createSource(stack, { name, kind: 'standard-webhooks', secrets: [secret] });
}, 120_000);

afterAll(async () => {
  await stack?.close();
});

function signed(body: string, id = `msg_${randomUUID()}`) {
  const at = Math.floor(Date.now() / 1000);
  return {
    'webhook-id': id,
    'webhook-timestamp': String(at),
    'webhook-signature': new Webhook(secret).sign(id, new Date(at * 1000), body),
  };
}

/** Writes `raw` on a new connection and reads until the server closes it or `ms` pass. */
function rawRequest(raw: string | Buffer, ms = 5_000): Promise<string> {
  const url = new URL(stack.httpUrl);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(url.port), url.hostname);
    let text = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(text);
    }, ms);
    socket.on('data', (d) => {
      text += d.toString('latin1');
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(text);
    });
    socket.on('error', (error) => {
      clearTimeout(timer);
      if (text) resolve(text);
      else reject(error);
    });
    socket.write(raw);
  });
}

const statuses = (text: string) => [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));

function head(lines: Record<string, string>, path = `/webhooks/${name}`, method = 'POST') {
  return `${method} ${path} HTTP/1.1\r\nHost: x\r\n${Object.entries(lines)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')}\r\n`;
}

describe('paths', () => {
  it('are never looked up unless they are a source name; encoded and odd names are 404', async () => {
    for (const path of [
      `/webhooks/..%2f${name}`,
      `/webhooks/%2e%2e`,
      `/webhooks/${name.toUpperCase()}`,
      `/webhooks/${name}%00`,
      `/webhooks/${name}%20`,
      `/webhooks/${name}/`,
      `/webhooks/${name}/extra`,
      `/webhooks/${'a'.repeat(5000)}`,
      `/webhooks/sluice-operational`,
      `/webhooks/${encodeURIComponent("x' or '1'='1")}`,
      '/webhooks/',
      '/webhooks',
    ]) {
      const answer = await post(stack.httpUrl, path, '{}', signed('{}'));
      // 414 for a path past fastify's parameter length.
      expect({ path, status: answer.status === 414 ? 404 : answer.status }).toEqual({ path, status: 404 });
    }
    expect(await inboxRows(stack, sourceId)).toHaveLength(0);
  });
});

describe('framing', () => {
  it('a body without Content-Type is verified on its bytes like any other', async () => {
    const body = '{"type":"no.content.type"}';
    const text = await rawRequest(
      `${head({ ...signed(body), 'content-length': String(body.length), connection: 'close' })}${body}`,
    );
    expect(statuses(text)).toEqual([200]);
  });

  it('refuses Content-Length with Transfer-Encoding, and two Content-Lengths, storing nothing', async () => {
    const body = '{"type":"smuggle"}';
    const before = (await inboxRows(stack, sourceId)).length;
    const both = await rawRequest(
      `${head({
        ...signed(body),
        'content-type': 'application/json',
        'content-length': '4',
        'transfer-encoding': 'chunked',
      })}${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`,
    );
    expect(statuses(both)[0]).toBe(400);
    const twice = await rawRequest(
      `${head({
        ...signed(body),
        'content-type': 'application/json',
        'content-length': String(body.length),
      }).replace('\r\n\r\n', `\r\ncontent-length: ${body.length + 1}\r\n\r\n`)}${body}`,
    );
    expect(statuses(twice)[0]).toBe(400);
    expect(await inboxRows(stack, sourceId)).toHaveLength(before);
  });

  it('a Content-Length shorter than the body: the rest is not a second request that gets in', async () => {
    const body = '{"type":"short"}';
    const inner = '{"type":"inner"}';
    const smuggled = `${head({ ...signed(inner), 'content-type': 'application/json', 'content-length': String(inner.length), connection: 'close' })}${inner}`;
    const before = (await inboxRows(stack, sourceId)).length;
    const text = await rawRequest(
      `${head({ ...signed(body), 'content-type': 'application/json', 'content-length': String(body.length) })}${body}${smuggled}`,
    );
    // Two well-formed pipelined requests are two requests, both signed: both may be stored. What
    // matters is that each is verified on its own bytes.
    expect(statuses(text).every((s) => s === 200)).toBe(true);
    const rows = await inboxRows(stack, sourceId);
    expect(rows.length - before).toBe(statuses(text).length);
    for (const row of rows.slice(before)) expect([body, inner]).toContain(row.body.toString());
  });

  it('a Content-Length longer than the body waits, then stores nothing when the client gives up', async () => {
    const body = '{"type":"long"}';
    const before = (await inboxRows(stack, sourceId)).length;
    const text = await rawRequest(
      `${head({ ...signed(body), 'content-type': 'application/json', 'content-length': String(body.length + 10) })}${body}`,
      1_500,
    );
    expect(text).toBe('');
    expect(await inboxRows(stack, sourceId)).toHaveLength(before);
    // The ingress still answers.
    expect((await post(stack.httpUrl, `/webhooks/${name}`, body, signed(body))).status).toBe(200);
  });
});

describe('signature headers', () => {
  it('a duplicated signature header verifies no more than one copy would', async () => {
    const body = '{"type":"dup.header"}';
    const headers = signed(body);
    const forged = `v1,${Buffer.alloc(32).toString('base64')}`;
    const lines = (signature: string[]) =>
      `${head({
        'webhook-id': headers['webhook-id'],
        'webhook-timestamp': headers['webhook-timestamp'],
        'content-type': 'application/json',
        'content-length': String(body.length),
        connection: 'close',
      }).replace(
        '\r\n\r\n',
        `\r\n${signature.map((s) => `webhook-signature: ${s}`).join('\r\n')}\r\n\r\n`,
      )}${body}`;
    expect(statuses(await rawRequest(lines([forged, forged])))).toEqual([401]);
    expect(statuses(await rawRequest(lines([forged, headers['webhook-signature']])))).toEqual([200]);
    // Two webhook-ids: the id signed is the one checked; the joined value is no valid id.
    const twoIds = `${head({
      'webhook-timestamp': headers['webhook-timestamp'],
      'webhook-signature': headers['webhook-signature'],
      'content-type': 'application/json',
      'content-length': String(body.length),
      connection: 'close',
    }).replace(
      '\r\n\r\n',
      `\r\nwebhook-id: ${headers['webhook-id']}\r\nwebhook-id: msg_other\r\n\r\n`,
    )}${body}`;
    expect(statuses(await rawRequest(twoIds))).toEqual([401]);
  });

  it('timestamps: far future, negative, fractional, with spaces or a sign are refused', async () => {
    const body = '{"type":"ts"}';
    const headers = signed(body);
    for (const ts of [
      '99999999999',
      '-1',
      `${headers['webhook-timestamp']}.5`,
      `+${headers['webhook-timestamp']}`,
      '1e10',
      '0x10',
    ]) {
      const answer = await post(stack.httpUrl, `/webhooks/${name}`, body, {
        ...headers,
        'webhook-timestamp': ts,
      });
      expect({ ts, status: answer.status }).toEqual({ ts, status: 401 });
    }
  });
});

describe('a supabase-database source switched to Standard Webhooks by UpdateSource', () => {
  it('does not verify with a key decoded from its shared secret', async () => {
    const acme = stack.client(await stack.token({ admin: ACME }));
    const created = await acme.createSource({
      source: { name: 'switched', kind: webhooks.SourceKind.SOURCE_KIND_SUPABASE_DATABASE },
      secret: '!!!!!!!!!!!!!!!!',
    } as webhooks.CreateSourceRequest);
    await acme.updateSource({
      id: created.source?.id ?? '',
      supabase: { auth: webhooks.SupabaseAuth.SUPABASE_AUTH_STANDARD_WEBHOOKS, header: '' },
    } as webhooks.UpdateSourceRequest);
    await new Promise((r) => setTimeout(r, 2_100)); // the ingress's source cache
    const body = '{"type":"INSERT","table":"x","schema":"public","record":{},"old_record":null}';
    const at = String(Math.floor(Date.now() / 1000));
    // "!!!…" decodes (Node skips what is not base64) to an empty key, which anyone can sign with.
    const forged = createHmac('sha256', Buffer.alloc(0)).update(`msg_forged.${at}.${body}`).digest('base64');
    const answer = await post(stack.httpUrl, '/webhooks/switched', body, {
      'webhook-id': 'msg_forged',
      'webhook-timestamp': at,
      'webhook-signature': `v1,${forged}`,
    });
    expect(answer.status).toBe(401);
  });
});
