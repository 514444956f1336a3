import { createHmac } from 'node:crypto';
import { isSluiceError, type SluiceError } from '@sluice/core';
import { describe, expect, it } from 'vitest';
import { comparePositions, ORIGIN, PositionCodec } from '../src/index';

function caught(fn: () => unknown): SluiceError {
  try {
    fn();
  } catch (error) {
    if (isSluiceError(error)) return error;
    throw error;
  }
  throw new Error('expected a SluiceError');
}

describe('PositionCodec', () => {
  const codec = new PositionCodec('test-secret');

  it('round-trips positions with and without a snapshot cover', () => {
    const plain = { window: 12345678901234n, id: 9007199254740993n };
    expect(codec.decode(codec.encode(plain), 'after')).toEqual(plain);
    expect(codec.decode(codec.encode(ORIGIN), 'after')).toEqual({ window: 0n, id: 0n });
    const withSnapshot = {
      window: 100n,
      id: 7n,
      cover: { snapshot: { xmin: 100n, xmax: 105n, xip: [100n, 103n] }, throughWindow: 102n },
    };
    const token = codec.encode(withSnapshot);
    expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(codec.decode(token, 'after')).toEqual(withSnapshot);
    // Another instance with the same secret accepts it.
    expect(new PositionCodec('test-secret').decode(token, 'after')).toEqual(withSnapshot);
  });

  it('refuses a tampered token as SLUICE_INVALID_POSITION on the field', () => {
    const token = codec.encode({ window: 500n, id: 42n });
    const bytes = Buffer.from(token, 'base64url');
    bytes[10] = (bytes[10] ?? 0) ^ 1; // the id's first byte
    const error = caught(() => codec.decode(bytes.toString('base64url'), 'start.after'));
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.reason).toBe('SLUICE_INVALID_POSITION');
    expect(error.violations[0]?.field).toBe('start.after');
    // A token signed with another secret is a forgery too.
    const foreign = new PositionCodec('other').encode({ window: 500n, id: 42n });
    expect(caught(() => codec.decode(foreign, 'after')).reason).toBe('SLUICE_INVALID_POSITION');
  });

  it('refuses garbage', () => {
    for (const garbage of [
      '',
      'not a token!',
      'AAAA',
      'x'.repeat(60),
      Buffer.alloc(80).toString('base64url'),
    ]) {
      const error = caught(() => codec.decode(garbage, 'after'));
      expect(error.code).toBe('INVALID_ARGUMENT');
      expect(error.reason).toBe('SLUICE_INVALID_POSITION');
    }
  });

  it('refuses a token of the earlier (xid, id) format', () => {
    // Signed with the right secret, so only the version can make it fail.
    const v1 = Buffer.alloc(18);
    v1.writeUInt8(1, 0);
    const mac = createHmac('sha256', 'test-secret').update(v1).digest().subarray(0, 16);
    const error = caught(() => codec.decode(Buffer.concat([v1, mac]).toString('base64url'), 'after'));
    expect(error.reason).toBe('SLUICE_INVALID_POSITION');
    expect(error.message).toContain('unknown version');
  });

  it('orders positions by (window, id)', () => {
    expect(comparePositions({ window: 1n, id: 9n }, { window: 2n, id: 1n })).toBeLessThan(0);
    expect(comparePositions({ window: 2n, id: 1n }, { window: 2n, id: 0n })).toBeGreaterThan(0);
    expect(comparePositions({ window: 2n, id: 1n }, { window: 2n, id: 1n })).toBe(0);
  });
});
