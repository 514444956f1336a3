import { createHmac, timingSafeEqual } from 'node:crypto';
import { invalidArgument, type SluiceError } from '@sluice/core';
import type { Position } from './position';

const VERSION = 1;
const FLAG_SNAPSHOT = 1;
// 128 bits of HMAC-SHA256: forging one still takes 2^128 tries, and tokens stay short.
const MAC_BYTES = 16;
const MAX_U64 = (1n << 64n) - 1n;

/**
 * Turns positions into opaque resume tokens and back. Tokens are signed, so a client cannot
 * fabricate a position (e.g. one past changes it should see); any instance sharing the secret
 * accepts them, across restarts.
 *
 * Layout (before the MAC): version u8, flags u8, xid u64, id u64, and with a snapshot:
 * xmin u64, xmax u64, xip count u32, xip u64 × count. Base64url without padding.
 */
export class PositionCodec {
  readonly #secret: string;

  constructor(secret: string) {
    if (secret.length === 0) throw new Error('PositionCodec needs a non-empty secret');
    this.#secret = secret;
  }

  encode(position: Position): string {
    const snapshot = position.snapshot;
    const size = 18 + (snapshot ? 20 + 8 * snapshot.xip.length : 0);
    const payload = Buffer.alloc(size);
    payload.writeUInt8(VERSION, 0);
    payload.writeUInt8(snapshot ? FLAG_SNAPSHOT : 0, 1);
    payload.writeBigUInt64BE(position.xid, 2);
    payload.writeBigUInt64BE(position.id, 10);
    if (snapshot) {
      payload.writeBigUInt64BE(snapshot.xmin, 18);
      payload.writeBigUInt64BE(snapshot.xmax, 26);
      payload.writeUInt32BE(snapshot.xip.length, 34);
      snapshot.xip.forEach((x, i) => {
        payload.writeBigUInt64BE(x, 38 + 8 * i);
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
      invalidArgument('SLUICE_INVALID_POSITION', field, `The position is invalid: ${why}`);
    if (!/^[A-Za-z0-9_-]+$/.test(token)) throw invalid('not a position token');
    const bytes = Buffer.from(token, 'base64url');
    if (bytes.length < 18 + MAC_BYTES) throw invalid('not a position token');
    const payload = bytes.subarray(0, bytes.length - MAC_BYTES);
    const mac = bytes.subarray(bytes.length - MAC_BYTES);
    if (!timingSafeEqual(mac, this.#mac(payload))) throw invalid('it was not issued by this service');
    if (payload.readUInt8(0) !== VERSION) throw invalid('unknown version');
    const flags = payload.readUInt8(1);
    const xid = payload.readBigUInt64BE(2);
    const id = payload.readBigUInt64BE(10);
    if (flags === 0 && payload.length === 18) return { xid, id };
    if (flags !== FLAG_SNAPSHOT || payload.length < 38) throw invalid('not a position token');
    const count = payload.readUInt32BE(34);
    if (payload.length !== 38 + 8 * count) throw invalid('not a position token');
    const xip: bigint[] = [];
    for (let i = 0; i < count; i++) xip.push(payload.readBigUInt64BE(38 + 8 * i));
    const snapshot = { xmin: payload.readBigUInt64BE(18), xmax: payload.readBigUInt64BE(26), xip };
    if (snapshot.xmin > snapshot.xmax || snapshot.xmax > MAX_U64) throw invalid('not a position token');
    return { xid, id, snapshot };
  }

  #mac(payload: Buffer): Buffer {
    return createHmac('sha256', this.#secret).update(payload).digest().subarray(0, MAC_BYTES);
  }
}
