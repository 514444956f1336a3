import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebhookSender } from '../src/outbound/sender';
import { blockedAddressReason, SsrfGuard } from '../src/outbound/ssrf-guard';

// Review: spellings of non-public addresses the authors' SSRF tests do not list, sent for real
// by the sender with an empty allowlist against a receiver on loopback that must never be hit.

let server: http.Server;
let port = 0;
let hits = 0;
let sender: WebhookSender;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    hits++;
    req.resume();
    res.end('reached');
  });
  // Both loopbacks when the host has IPv6 ('::' takes IPv4 too on Linux).
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '::', resolve);
  }).catch(() => new Promise<void>((resolve) => server.listen(0, '0.0.0.0', resolve)));
  port = (server.address() as AddressInfo).port;
  sender = new WebhookSender(new SsrfGuard({ allowedHosts: [], httpsOnly: false }), 3_000);
});

afterAll(async () => {
  await sender?.close();
  server?.closeAllConnections();
  server?.close();
});

describe('review: SSRF spellings', () => {
  it('refuses IPv4-translated (SIIT) addresses like NAT64 ones: a translator carries them to IPv4', () => {
    for (const a of ['::ffff:0:7f00:1', '::ffff:0:a00:1', '::ffff:0:a9fe:a9fe', '0:0:0:0:ffff:0:7f00:1'])
      expect(blockedAddressReason(a), a).toMatch(/non-public/);
    // Only that /96: the rest of ::/8 beside the blocks stays as it was.
    expect(blockedAddressReason('::1:0:0:1')).toBeUndefined();
  });

  it('refuses loopback however the URL spells it, before connecting', async () => {
    const urls = [
      `http://0x7f.1:${port}/`,
      `http://017700000001:${port}/`,
      `http://0177.0.0.1:${port}/`,
      `http://127.1:${port}/`,
      `http://2130706433:${port}/`,
      `http://127.0.0.1.:${port}/`,
      `HTTP://127.0.0.1:${port}/`,
      `http://evil.example@127.0.0.1:${port}/`,
      `http://127.0.0.1:${port}@127.0.0.1:${port}/`,
      `http://[::ffff:7f00:1]:${port}/`,
      `http://[::FFFF:127.0.0.1]:${port}/`,
      `http://[0:0:0:0:0:ffff:7f00:1]:${port}/`,
      `http://[::127.0.0.1]:${port}/`,
      `http://[::]:${port}/`,
      `http://0:${port}/`,
      `http://[0::1]:${port}/`,
    ];
    for (const url of urls) {
      const result = await sender.send({ url, headers: {}, body: '{}' });
      expect(result.outcome, url).toBe('blocked');
    }
    expect(hits).toBe(0);
  });

  it('names of loopback (any case, a trailing dot) are refused or not found, never reached', async () => {
    for (const url of [
      `http://LOCALHOST:${port}/`,
      `http://localhost.:${port}/`,
      `http://ip6-localhost:${port}/`,
    ]) {
      const result = await sender.send({ url, headers: {}, body: '{}' });
      expect(['blocked', 'network_error'], `${url}: ${result.error}`).toContain(result.outcome);
    }
    const plain = await sender.send({ url: `http://localhost:${port}/`, headers: {}, body: '{}' });
    expect(plain.outcome).toBe('blocked');
    expect(hits).toBe(0);
  });

  it('invalid URLs and ports are failed attempts, not throws', async () => {
    for (const url of [
      `http://127.0.0.1:65536/`,
      'http://[fe80::1%eth0]/',
      'http://[fe80::1%25eth0]/',
      'http:///',
    ]) {
      const result = await sender.send({ url, headers: {}, body: '{}' });
      expect(['blocked', 'network_error'], url).toContain(result.outcome);
    }
    expect(hits).toBe(0);
  });
});
