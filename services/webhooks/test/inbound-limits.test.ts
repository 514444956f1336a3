import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWebhooksStack, type WebhooksInstance, type WebhooksStack } from './helpers';
import { createSource, eventually, inboxRows, newSecret, post, sourceName } from './inbound/helpers';

// Duplicates arriving at the same moment on two instances, bodies over the limit (declared and
// chunked), and a database that cannot be reached: 503 with Retry-After, nothing stored, and the
// sender's retry stored once when it is back.

let stack: WebhooksStack;
let second: WebhooksInstance;

beforeAll(async () => {
  stack = await startWebhooksStack();
  second = await stack.addInstance();
});

afterAll(async () => {
  await stack?.close();
});

function signed(secret: string, body: string, id = `msg_${randomUUID()}`) {
  const at = Math.floor(Date.now() / 1000);
  return {
    'webhook-id': id,
    'webhook-timestamp': String(at),
    'webhook-signature': new Webhook(secret).sign(id, new Date(at * 1000), body),
  };
}

describe('dedupe', () => {
  it('stores concurrent copies on two instances once, and answers them all alike', async () => {
    const secret = newSecret();
    const name = sourceName('dup');
    const id = await createSource(stack, { name, kind: 'standard-webhooks', secrets: [secret] });
    for (let round = 0; round < 3; round++) {
      const body = `{"type":"race","round":${round}}`;
      const headers = signed(secret, body);
      const answers = await Promise.all(
        Array.from({ length: 16 }, (_, i) =>
          post(i % 2 === 0 ? stack.httpUrl : second.httpUrl, `/webhooks/${name}`, body, headers),
        ),
      );
      expect(answers.map((a) => a.status)).toEqual(Array(16).fill(200));
      expect(new Set(answers.map((a) => a.json.id)).size).toBe(1);
      expect(answers.filter((a) => a.json.duplicate === false)).toHaveLength(1);
      const rows = (await inboxRows(stack, id)).filter((r) => r.external_id === headers['webhook-id']);
      expect(rows).toHaveLength(1);
      expect(rows[0]!.id).toBe(answers[0]!.json.id);
    }
  });
});

describe('body limit', () => {
  const secret = newSecret();
  const name = sourceName('small');
  let id: string;
  beforeAll(async () => {
    id = await createSource(stack, {
      name,
      kind: 'standard-webhooks',
      secrets: [secret],
      settings: { maxBodyBytes: 2048 },
    });
  });

  it('accepts a body at the limit and refuses one past it by its Content-Length', async () => {
    const at = `{"type":"x","pad":"${'a'.repeat(2048 - 21)}"}`;
    expect(Buffer.byteLength(at)).toBe(2048);
    expect((await post(stack.httpUrl, `/webhooks/${name}`, at, signed(secret, at))).status).toBe(200);
    const over = `{"type":"x","pad":"${'a'.repeat(2049 - 21)}"}`;
    const answer = await post(stack.httpUrl, `/webhooks/${name}`, over, signed(secret, over));
    expect(answer.status).toBe(413);
    expect(answer.json.error.code).toBe('body_too_large');
    expect(await inboxRows(stack, id)).toHaveLength(1);
  });

  it('stops reading a chunked body once it passes the limit', async () => {
    const url = new URL(stack.httpUrl);
    const result = await new Promise<{ status: number; body: string; chunksWritten: number }>(
      (resolve, reject) => {
        const request = http.request({
          host: url.hostname,
          port: url.port,
          method: 'POST',
          path: `/webhooks/${name}`,
          headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
        });
        let written = 0;
        let answered = false;
        request.on('response', (response) => {
          answered = true;
          let body = '';
          response.on('data', (c) => {
            body += c;
          });
          response.on('end', () =>
            resolve({ status: response.statusCode ?? 0, body, chunksWritten: written }),
          );
        });
        // The server closes the connection after its answer: writing on may fail, which is fine.
        request.on('error', (error) => {
          if (!answered) reject(error);
        });
        const chunk = Buffer.alloc(1024, 0x61);
        const pump = () => {
          if (answered || written >= 1000) {
            request.end();
            return;
          }
          written++;
          request.write(chunk, () => setTimeout(pump, 5));
        };
        pump();
      },
    );
    expect(result.status).toBe(413);
    expect(JSON.parse(result.body).error.code).toBe('body_too_large');
    // Answered after about 2 KiB, long before the megabyte the client would have sent.
    expect(result.chunksWritten).toBeLessThan(200);
    expect(await inboxRows(stack, id)).toHaveLength(1);
  });
});

describe('database unavailable', () => {
  it('answers 503 with Retry-After, stores nothing, and stores the retry once it is back', async () => {
    const secret = newSecret();
    const name = sourceName('down');
    const id = await createSource(stack, { name, kind: 'standard-webhooks', secrets: [secret] });
    const body = '{"type":"while.down"}';
    const headers = signed(secret, body);
    const { rows } = await stack.pool.query<{ db: string }>('select current_database() as db');
    const db = rows[0]!.db;
    // New connections to this database are refused (superusers excepted, so the test keeps
    // its pool), and every other connection to it is closed: the service's pool must reconnect.
    await stack.pool.query(`alter database "${db}" connection limit 0`);
    try {
      await stack.pool.query(
        `select pg_terminate_backend(pid) from pg_stat_activity
          where datname = current_database() and pid <> pg_backend_pid()
            and usename <> current_user`,
      );
      const down = await post(stack.httpUrl, `/webhooks/${name}`, body, headers);
      expect(down.status).toBe(503);
      expect(down.headers.get('retry-after')).toBe('5');
      expect(down.json.error.code).toBe('database_unavailable');
      // The source is cached now: the insert itself fails the same way.
      const again = await post(second.httpUrl, `/webhooks/${name}`, body, headers);
      expect(again.status).toBe(503);
      expect(await inboxRows(stack, id)).toHaveLength(0);
    } finally {
      await stack.pool.query(`alter database "${db}" connection limit -1`);
    }
    // The sender retries: stored once.
    await eventually(
      async () => (await post(stack.httpUrl, `/webhooks/${name}`, body, headers)).status === 200,
    );
    const retried = await post(second.httpUrl, `/webhooks/${name}`, body, headers);
    expect(retried).toMatchObject({ status: 200, json: { duplicate: true } });
    expect(await inboxRows(stack, id)).toHaveLength(1);
  });
});

describe('close', () => {
  it('finishes a request in flight, then accepts no more', async () => {
    const instance = await stack.addInstance();
    const secret = newSecret();
    const name = sourceName('closing');
    const id = await createSource(stack, { name, kind: 'standard-webhooks', secrets: [secret] });
    const body = Buffer.from(`{"type":"slow","pad":"${'p'.repeat(4000)}"}`);
    const headers = signed(secret, body.toString());
    const url = new URL(instance.httpUrl);
    let closing: Promise<void> | undefined;
    const status = await new Promise<number>((resolve, reject) => {
      const request = http.request({
        host: url.hostname,
        port: url.port,
        method: 'POST',
        path: `/webhooks/${name}`,
        headers: { ...headers, 'content-type': 'application/json', 'content-length': String(body.length) },
      });
      request.on('response', (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
      });
      request.on('error', reject);
      // Half the body, then the service is asked to stop, then the rest.
      request.write(body.subarray(0, 2000), () => {
        setTimeout(() => {
          closing = instance.close();
          setTimeout(() => request.end(body.subarray(2000)), 500);
        }, 200);
      });
    });
    expect(status).toBe(200);
    await closing;
    expect((await inboxRows(stack, id)).map((r) => r.external_id)).toEqual([headers['webhook-id']]);
    await expect(
      fetch(`${instance.httpUrl}/webhooks/${name}`, { method: 'POST', body: '{}' }),
    ).rejects.toThrow();
  });
});

describe('one event PostgreSQL refuses', () => {
  it('fails alone (500), while the events stored beside it in the same moment get their 200', async () => {
    const secret = newSecret();
    const name = sourceName('poison');
    const id = await createSource(stack, { name, kind: 'standard-webhooks', secrets: [secret] });
    // A test-only trigger refuses one external id, as a constraint or a bad value would.
    await stack.pool.query(`
      create function pg_temp_refuse_poison() returns trigger language plpgsql as $$
      begin
        if new.external_id = 'msg_poison' then raise exception 'poison refused' using errcode = '23514'; end if;
        return new;
      end $$;
      create trigger refuse_poison before insert on sluice_webhooks.inbox
        for each row execute function pg_temp_refuse_poison();`);
    try {
      const events = Array.from({ length: 40 }, (_, i) => {
        const body = `{"type":"batch","n":${i}}`;
        return { body, headers: signed(secret, body, i === 20 ? 'msg_poison' : `msg_${randomUUID()}`) };
      });
      const answers = await Promise.all(
        events.map((e) => post(stack.httpUrl, `/webhooks/${name}`, e.body, e.headers)),
      );
      expect(answers[20]!.status).toBe(500);
      expect(answers[20]!.json.error.code).toBe('internal');
      expect(answers[20]!.json.error.message).not.toContain('poison');
      const others = answers.filter((_, i) => i !== 20);
      expect(others.map((a) => a.status)).toEqual(Array(39).fill(200));
      expect(await inboxRows(stack, id)).toHaveLength(39);
    } finally {
      await stack.pool.query(
        'drop trigger refuse_poison on sluice_webhooks.inbox; drop function pg_temp_refuse_poison()',
      );
    }
  });
});
