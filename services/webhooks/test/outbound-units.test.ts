import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { EndpointBreakers } from '../src/outbound/endpoint-breakers';
import { parseRetryAfter, type RetrySettings, retryDelayMs } from '../src/outbound/retry-schedule';
import { signatureHeader } from '../src/outbound/signing';
import { generateSecret } from '../src/secrets';

// The pure parts of outbound delivery: the retry arithmetic, Retry-After parsing, the breaker's
// state machine and signing (cross-checked with the standardwebhooks library).

const svix: RetrySettings = {
  retryScheduleMs: [5, 300, 1800, 7200, 18000, 36000, 36000].map((s) => s * 1000),
  retryJitter: 0.2,
  minRetryAfterTimeoutMs: 60_000,
  maxRetryAfterMs: 10 * 3_600_000,
};

describe('retryDelayMs', () => {
  it('follows the schedule by attempt number and is exhausted after its last entry', () => {
    const mid = () => 0.5; // no jitter
    expect(retryDelayMs({ attempts: 1, overloaded: false }, svix, mid)).toBe(5_000);
    expect(retryDelayMs({ attempts: 2, overloaded: false }, svix, mid)).toBe(300_000);
    expect(retryDelayMs({ attempts: 7, overloaded: false }, svix, mid)).toBe(36_000_000);
    expect(retryDelayMs({ attempts: 8, overloaded: false }, svix, mid)).toBeUndefined();
  });

  it('moves each delay by up to ±jitter, uniformly', () => {
    expect(retryDelayMs({ attempts: 2, overloaded: false }, svix, () => 0)).toBe(240_000);
    expect(retryDelayMs({ attempts: 2, overloaded: false }, svix, () => 0.999_999)).toBe(360_000);
    for (let i = 0; i < 1000; i++) {
      const d = retryDelayMs({ attempts: 2, overloaded: false }, svix) as number;
      expect(d).toBeGreaterThanOrEqual(240_000);
      expect(d).toBeLessThanOrEqual(360_000);
    }
  });

  it('waits at least minRetryAfterTimeoutMs after a timeout or 429', () => {
    expect(retryDelayMs({ attempts: 1, overloaded: true }, svix, () => 0.5)).toBe(60_000);
    // A longer scheduled delay stays.
    expect(retryDelayMs({ attempts: 2, overloaded: true }, svix, () => 0.5)).toBe(300_000);
  });

  it('honours Retry-After up to maxRetryAfterMs, never retrying sooner than scheduled', () => {
    expect(retryDelayMs({ attempts: 1, overloaded: false, retryAfterMs: 120_000 }, svix, () => 0.5)).toBe(
      120_000,
    );
    expect(retryDelayMs({ attempts: 1, overloaded: false, retryAfterMs: 1_000 }, svix, () => 0.5)).toBe(
      5_000,
    );
    expect(retryDelayMs({ attempts: 1, overloaded: false, retryAfterMs: 86_400_000 }, svix, () => 0.5)).toBe(
      36_000_000,
    );
    // Retry-After does not extend the schedule past its end.
    expect(retryDelayMs({ attempts: 8, overloaded: false, retryAfterMs: 1_000 }, svix)).toBeUndefined();
  });
});

describe('parseRetryAfter', () => {
  it('reads delay-seconds and HTTP dates', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(parseRetryAfter('120', now)).toBe(120_000);
    expect(parseRetryAfter(' 0 ', now)).toBe(0);
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:01:30 GMT', now)).toBe(90_000);
    expect(parseRetryAfter('Wed, 31 Dec 2025 00:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter('-5', now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
  });
});

describe('EndpointBreakers', () => {
  it('opens after N failures in a row, lets one probe through after resetMs, closes on its success', () => {
    let now = 0;
    const b = new EndpointBreakers({ failures: 3, resetMs: 1000, now: () => now });
    expect(b.failed('e')).toBeUndefined();
    expect(b.failed('e')).toBeUndefined();
    expect(b.state('e')).toBe('closed');
    expect(b.failed('e')).toBe('open');
    expect(b.gates()).toEqual({ excluded: ['e'], probes: [] });
    expect(b.openCount()).toBe(1);
    now = 999;
    expect(b.state('e')).toBe('open');
    now = 1000;
    expect(b.state('e')).toBe('half-open');
    expect(b.gates()).toEqual({ excluded: [], probes: ['e'] });
    b.claimed('e');
    // The probe is in flight: nothing else.
    expect(b.gates()).toEqual({ excluded: ['e'], probes: [] });
    expect(b.succeeded('e')).toBe('half-open');
    expect(b.state('e')).toBe('closed');
    expect(b.gates()).toEqual({ excluded: [], probes: [] });
    expect(b.openCount()).toBe(0);
  });

  it('a failed probe reopens it for another resetMs; a success in between resets the count', () => {
    let now = 0;
    const b = new EndpointBreakers({ failures: 2, resetMs: 1000, now: () => now });
    b.failed('e');
    b.succeeded('e');
    expect(b.failed('e')).toBeUndefined();
    expect(b.failed('e')).toBe('open');
    now = 1500;
    b.claimed('e');
    expect(b.failed('e')).toBe('open');
    expect(b.state('e')).toBe('open');
    now = 2499;
    expect(b.state('e')).toBe('open');
    now = 2500;
    expect(b.state('e')).toBe('half-open');
    expect(b.state('other')).toBe('closed');
  });
});

describe('signatureHeader', () => {
  it('signs id.timestamp.body with each whsec_ secret, verifiable by standardwebhooks', () => {
    const a = generateSecret();
    const b = generateSecret();
    const body = '{"type":"x","data":{"é":1}}';
    const ts = Math.floor(Date.now() / 1000);
    const header = signatureHeader('msg_1', ts, body, [a, 'not-a-secret', b]);
    expect(header.split(' ')).toHaveLength(2);
    const headers = { 'webhook-id': 'msg_1', 'webhook-timestamp': String(ts), 'webhook-signature': header };
    expect(new Webhook(a).verify(body, headers)).toEqual({ type: 'x', data: { é: 1 } });
    expect(new Webhook(b).verify(body, headers)).toEqual({ type: 'x', data: { é: 1 } });
    expect(header.split(' ')[0]).toBe(new Webhook(a).sign('msg_1', new Date(ts * 1000), body));
    expect(() => new Webhook(generateSecret()).verify(body, headers)).toThrow();
  });
});
