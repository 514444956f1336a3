import { createDataClient, type DataClient, fromValue, toObjects, v } from '@sluice/client';
import { Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectRejection } from './expect-rejection';
import { ACME, startStack, type TestStack } from './helpers';

// The @sluice/client value helpers against a real server: what they build must reach the
// database unchanged, and what they read must keep JSON null apart from SQL NULL.

let stack: TestStack;
let alice: DataClient;

beforeAll(async () => {
  stack = await startStack();
  alice = createDataClient(`127.0.0.1:${stack.server.port}`, {
    token: await stack.token('alice'),
    channel: stack.channel,
  });
});
afterAll(async () => {
  await stack?.close();
});

async function roundTrip(column: string, value: ReturnType<typeof v.null>) {
  const res = await alice.insert({
    table: 'type_samples',
    columns: ['tenant_id', column],
    rows: [{ values: [v.string(ACME), value] }],
    returning: [column],
  });
  return res.result;
}

describe('@sluice/client values', () => {
  it('v.json(null) is JSON null, v.null() is SQL NULL, and fromValue keeps them apart', async () => {
    const json = await roundTrip('jsb', v.json(null));
    const sql = await roundTrip('jsb', v.null());
    expect(toObjects(json)).toEqual([{ jsb: 'null' }]);
    expect(toObjects(sql)).toEqual([{ jsb: null }]);
    expect(fromValue(json?.rows[0]?.values[0])).toBe('null');
    const nested = await roundTrip('jsb', v.json({ a: [null, 12345678901234567890n.toString()] }));
    expect(toObjects(nested)).toEqual([{ jsb: '{"a": [null, "12345678901234567890"]}' }]);
    const text = await roundTrip('js', v.jsonText('{"big": 12345678901234567890}'));
    expect(toObjects(text)).toEqual([{ js: '{"big": 12345678901234567890}' }]);
  });

  it('v.json refuses what JSON cannot say instead of changing it', () => {
    expect(() => v.json(Number.NaN)).toThrow(TypeError);
    expect(() => v.json({ a: Number.POSITIVE_INFINITY })).toThrow(TypeError);
    expect(() => v.json(undefined)).toThrow(TypeError);
  });

  it('v.timestamp(Date) before 1970 keeps nanos in 0..999,999,999 and the instant', async () => {
    const date = new Date(Date.UTC(1969, 11, 31, 23, 59, 59, 250));
    expect(v.timestamp(date).kind).toEqual({
      $case: 'timestampValue',
      value: { seconds: -1n, nanos: 250_000_000 },
    });
    const result = await roundTrip('ts', v.timestamp(date));
    expect(toObjects(result)).toEqual([{ ts: { seconds: -1n, nanos: 250_000_000 } }]);
  });

  it('an out-of-range timestamp is INVALID_ARGUMENT naming the field', async () => {
    const r = await expectRejection(roundTrip('ts', v.timestamp({ seconds: 10n ** 15n, nanos: 0 })), {
      code: Status.INVALID_ARGUMENT,
      reason: 'SLUICE_INVALID_VALUE',
    });
    expect(r.fields).toEqual(['rows[0].values[1]']);
  });
});
