import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RESPONSE_BODY_LIMIT, WebhookSender } from '../src/outbound/sender';
import { SsrfGuard } from '../src/outbound/ssrf-guard';

// Review: the sender against receivers the authors' tests do not play — odd URLs and
// misbehaving HTTP. send() must return a result for whatever the endpoint is or does (a throw
// is not recorded: the delivery comes back with each lease, for ever), within its timeout.

const TIMEOUT_MS = 1_500;
let httpServer: http.Server;
let rawServer: net.Server;
let httpPort = 0;
let rawPort = 0;
let lastAuthorization: string | undefined;
let sender: WebhookSender;
/** What the raw server answers to the next request. */
let raw: (socket: net.Socket) => void = (s) => s.destroy();

beforeAll(async () => {
  httpServer = http.createServer((req, res) => {
    lastAuthorization = req.headers.authorization;
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
  httpPort = (httpServer.address() as net.AddressInfo).port;
  rawServer = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.once('data', () => raw(socket));
  });
  await new Promise<void>((resolve) => rawServer.listen(0, '127.0.0.1', resolve));
  rawPort = (rawServer.address() as net.AddressInfo).port;
  sender = new WebhookSender(new SsrfGuard({ allowedHosts: ['127.0.0.1'], httpsOnly: false }), TIMEOUT_MS);
});

afterAll(async () => {
  await sender?.close();
  httpServer?.closeAllConnections();
  httpServer?.close();
  rawServer?.close();
});

const send = (url: string) => sender.send({ url, headers: {}, body: '{}' });

describe('review: the sender', () => {
  it('a malformed percent escape in URL credentials is sent as written, not thrown', async () => {
    // The URL parser keeps "%ZZ"; decodeURIComponent threw out of send().
    const result = await send(`http://a%ZZ:p%@127.0.0.1:${httpPort}/`);
    expect(result).toMatchObject({ outcome: 'succeeded', statusCode: 200 });
    expect(lastAuthorization).toBe(`Basic ${Buffer.from('a%ZZ:p%').toString('base64')}`);
  });

  it('headers trickling in one line at a time are bounded by the timeout as a whole', async () => {
    raw = (s) => {
      let i = 0;
      const timer = setInterval(() => {
        if (s.destroyed) clearInterval(timer);
        else s.write(i++ === 0 ? 'HTTP/1.1 500 Slow\r\n' : `x-line-${i}: a\r\n`);
      }, 100);
    };
    const started = Date.now();
    const result = await send(`http://127.0.0.1:${rawPort}/`);
    expect(result.outcome).toBe('timeout');
    expect(Date.now() - started).toBeLessThan(TIMEOUT_MS + 1_000);
  });

  it('a 500 body trickling for ever is cut at the timeout; the status is kept', async () => {
    raw = (s) => {
      s.write('HTTP/1.1 500 Slow\r\ntransfer-encoding: chunked\r\n\r\n');
      const timer = setInterval(() => {
        if (s.destroyed) clearInterval(timer);
        else s.write('1\r\na\r\n');
      }, 50);
    };
    const started = Date.now();
    const result = await send(`http://127.0.0.1:${rawPort}/`);
    expect(result).toMatchObject({ outcome: 'http_error', statusCode: 500 });
    expect(result.error).toMatch(/body timed out/);
    expect(Date.now() - started).toBeLessThan(TIMEOUT_MS + 1_000);
  });

  it('a 200 whose body never ends succeeds after reading RESPONSE_BODY_LIMIT bytes', async () => {
    raw = (s) => {
      s.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n');
      const chunk = `10000\r\n${'a'.repeat(0x10000)}\r\n`;
      const timer = setInterval(() => {
        if (s.destroyed) clearInterval(timer);
        else s.write(chunk);
      }, 1);
    };
    const result = await send(`http://127.0.0.1:${rawPort}/`);
    expect(result).toMatchObject({ outcome: 'succeeded', statusCode: 200 });
    expect(result.responseBody).toHaveLength(RESPONSE_BODY_LIMIT);
    expect(result.durationMs).toBeLessThan(TIMEOUT_MS);
  });

  it('invalid HTTP, an unasked-for upgrade and oversized headers are network errors, not throws', async () => {
    const answers: [string, string][] = [
      ['garbage\r\n\r\n', 'network_error'],
      [
        'HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n',
        'network_error',
      ],
      [`HTTP/1.1 200 OK\r\nx-big: ${'a'.repeat(100_000)}\r\ncontent-length: 0\r\n\r\n`, 'network_error'],
    ];
    for (const [answer, outcome] of answers) {
      raw = (s) => s.end(answer);
      expect((await send(`http://127.0.0.1:${rawPort}/`)).outcome).toBe(outcome);
    }
  });
});
