import { createHmac, timingSafeEqual } from 'node:crypto';
import { invalidArgument, type SluiceError } from '@sluice/core';
import { ChangesReason } from './errors';
import type { Position } from './position';

// Version 2: (window, id) positions; version 1 tokens ((xid, id)) are refused as unknown.
const VERSION = 2;
const FLAG_COVER = 1;
// 128 bits of HMAC-SHA256: forging one still takes 2^128 tries, and tokens stay short.
const MAC_BYTES = 16;
const MAX_U64 = (1n << 64n) - 1n;

/**
 * Turns positions into opaque resume tokens and back. Tokens are signed, so a client cannot
 * fabricate a position (e.g. one past changes it should see); any instance sharing the secret
 * accepts them, across restarts.
 *
 * Layout (before the MAC): version u8, flags u8, window u64, id u64, and with a snapshot cover:
 * through-window u64, xmin u64, xmax u64, xip count u32, xip u64 × count. Base64url without padding.
 */
export class PositionCodec {
  readonly #secret: string;

  constructor(secret: string) {
    if (secret.length === 0) throw new Error('PositionCodec needs a non-empty secret');
    this.#secret = secret;
  }

  encode(position: Position): string {
    const cover = position.cover;
    const size = 18 + (cover ? 28 + 8 * cover.snapshot.xip.length : 0);
    const payload = Buffer.alloc(size);
    payload.writeUInt8(VERSION, 0);
    payload.writeUInt8(cover ? FLAG_COVER : 0, 1);
    payload.writeBigUInt64BE(position.window, 2);
    payload.writeBigUInt64BE(position.id, 10);
    if (cover) {
      payload.writeBigUInt64BE(cover.throughWindow, 18);
      payload.writeBigUInt64BE(cover.snapshot.xmin, 26);
      payload.writeBigUInt64BE(cover.snapshot.xmax, 34);
      payload.writeUInt32BE(cover.snapshot.xip.length, 42);
      cover.snapshot.xip.forEach((x, i) => {
        payload.writeBigUInt64BE(x, 46 + 8 * i);
      });
    }
    return Buffer.concat([payload, this.#mac(payload)]).toString('base64url');
  }

  /**
   * The position a token encodes.
   *
   * @throws SluiceError INVALID_ARGUMENT, reason SLUICE_INVALID_POSITION, violation on `field`:
   *   the token is malformed, of an unknown version, or not signed with this secret (forged).
   */
  decode(token: string, field: string): Position {
    const invalid = (why: string): SluiceError =>
      invalidArgument(ChangesReason.invalidPosition, field, `The position is invalid: ${why}`);
    if (!/^[A-Za-z0-9_-]+$/.test(token)) throw invalid('not a position token');
    const bytes = Buffer.from(token, 'base64url');
    if (bytes.length < 18 + MAC_BYTES) throw invalid('not a position token');
    const payload = bytes.subarray(0, bytes.length - MAC_BYTES);
    const mac = bytes.subarray(bytes.length - MAC_BYTES);
    if (!timingSafeEqual(mac, this.#mac(payload))) throw invalid('it was not issued by this service');
    if (payload.readUInt8(0) !== VERSION) throw invalid('unknown version');
    const flags = payload.readUInt8(1);
    const window = payload.readBigUInt64BE(2);
    const id = payload.readBigUInt64BE(10);
    if (flags === 0 && payload.length === 18) return { window, id };
    if (flags !== FLAG_COVER || payload.length < 46) throw invalid('not a position token');
    const count = payload.readUInt32BE(42);
    if (payload.length !== 46 + 8 * count) throw invalid('not a position token');
    const xip: bigint[] = [];
    for (let i = 0; i < count; i++) xip.push(payload.readBigUInt64BE(46 + 8 * i));
    const snapshot = { xmin: payload.readBigUInt64BE(26), xmax: payload.readBigUInt64BE(34), xip };
    if (snapshot.xmin > snapshot.xmax || snapshot.xmax > MAX_U64) throw invalid('not a position token');
    return { window, id, cover: { snapshot, throughWindow: payload.readBigUInt64BE(18) } };
  }

  #mac(payload: Buffer): Buffer {
    return createHmac('sha256', this.#secret).update(payload).digest().subarray(0, MAC_BYTES);
  }
}
