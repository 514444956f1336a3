import { decodeValue, loadCatalog, type SchemaCatalog } from '@sluice/db';
import { type Value, webhooks } from '@sluice/proto';
import pg from 'pg';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChangeMisfit, numericText, typedChange } from '../src/inbound/supabase-change';
import { startWebhooksStack, type WebhooksStack } from './helpers';
import { createSource, eventually, inboxRows, post, sourceName } from './inbound/helpers';

// Supabase database-webhook payloads typed against the schema catalog. The oracle is
// PostgreSQL: the same record given to jsonb_populate_record and read back as text, decoded
// with the data service's decodeValue, must equal what typedChange makes of the payload.

let stack: WebhooksStack;
let catalog: SchemaCatalog;
let sourceId: string;
const name = sourceName('supabase');
const SECRET = 'supabase-shared-secret';

const TABLE_SQL = `
create type public.wh_mood as enum ('happy', 'sad');
create table public.wh_kinds (
  id bigint primary key,
  small int2,
  big int8,
  amount numeric,
  ratio float8,
  flag bool,
  at timestamptz,
  local timestamp,
  uid uuid,
  meta jsonb,
  doc json,
  tags text[],
  grid int4[],
  data bytea,
  feeling public.wh_mood,
  day date,
  note text not null default ''
)`;

// Written by hand as pg_net sends it: numbers beyond a double, an offset, upper-case uuid, …
const RECORD = `{"id": 9223372036854775807, "small": -32768, "big": -9223372036854775808,
  "amount": 12345678901234567890.123456789, "ratio": 0.1, "flag": true,
  "at": "2024-02-29T12:34:56.123456+05:30", "local": "2024-01-01T00:00:00.5",
  "uid": "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
  "meta": {"b": 1, "aa": [1.10, 12345678901234567890], "a": null, "c": {"y": "\\u00e9", "x": false}, "é": 1.5e3, "ab": -0, "dup": 1, "dup": 2},
  "doc": {"k": [1, 2]},
  "tags": ["x", null, "z\\"q"], "grid": [[1, 2], [3, 4]], "data": "\\\\x00ff10",
  "feeling": "sad", "day": "2024-02-29", "note": "héllo"}`;

const payload = (type: string, record: string | null, oldRecord: string | null, table = 'wh_kinds') =>
  `{"type": "${type}", "table": "${table}", "schema": "public", "record": ${record}, "old_record": ${oldRecord}}`;

const send = (body: string) => post(stack.httpUrl, `/webhooks/${name}`, body, { 'x-webhook-secret': SECRET });

/** What the data service answers for `record` stored in public.wh_kinds: column name → Value. */
async function oracle(record: string): Promise<Map<string, Value>> {
  const client = new pg.Client({
    connectionString: stack.db.url,
    types: { getTypeParser: () => (v: string) => v },
    options: '-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=iso_8601',
  });
  await client.connect();
  try {
    const result = await client.query({
      text: 'select * from jsonb_populate_record(null::public.wh_kinds, $1::jsonb)',
      values: [record],
      rowMode: 'array',
    });
    const row = result.rows[0] as (string | null)[];
    return new Map(
      result.fields.map((f, i) => [f.name, decodeValue(row[i] ?? null, f.dataTypeID, catalog.types)]),
    );
  } finally {
    await client.end();
  }
}

function byColumn(change: webhooks.TypedChange, row: 'record' | 'oldRecord'): Map<string, Value> {
  const values = change[row]?.values ?? [];
  return new Map(change.columns.map((c, i) => [c.name, values[i] as Value]));
}

beforeAll(async () => {
  stack = await startWebhooksStack();
  await stack.pool.query(TABLE_SQL);
  catalog = await loadCatalog(stack.db.url, ['public'], ['authenticated']);
  sourceId = await createSource(stack, { name, kind: 'supabase-database', secrets: [SECRET] });
  // The service reloads its catalog after DDL (NOTIFY): wait until it knows the table.
  await eventually(async () => {
    const answer = await send(payload('INSERT', '{"id": 0}', null));
    return answer.status === 200;
  });
});

afterAll(async () => {
  await stack?.close();
});

describe('supabase-database payloads', () => {
  it('stores an INSERT with its change, and types it exactly as the data service would', async () => {
    const body = payload('INSERT', RECORD, null);
    const answer = await send(body);
    expect(answer.status).toBe(200);
    const row = (await inboxRows(stack, sourceId)).find((r) => r.id === answer.json.id)!;
    expect(row.change).toEqual({ operation: 'INSERT', schema: 'public', table: 'wh_kinds' });
    expect(row.event_type).toBe('INSERT');

    const change = typedChange(catalog, row.body);
    expect(change.operation).toBe(webhooks.Operation.OPERATION_INSERT);
    expect(change.oldRecord).toBeUndefined();
    // Every column of the payload, in the table's order, with PostgreSQL's type names.
    expect(change.columns.map((c) => c.name)).toEqual([
      ...catalog.table('public', 'wh_kinds')!.columns.map((c) => c.name),
    ]);
    expect(change.columns.find((c) => c.name === 'feeling')!.type).toBe('public.wh_mood');
    const typed = byColumn(change, 'record');
    const exact = await oracle(RECORD);
    for (const [column, value] of exact) {
      if (column === 'doc') continue; // json keeps its input text in PostgreSQL; checked below
      expect(typed.get(column), column).toEqual(value);
    }
    // Precision kept where a double would lose it.
    expect(typed.get('id')).toEqual({ kind: { $case: 'intValue', value: 9223372036854775807n } });
    expect(typed.get('amount')).toEqual({
      kind: { $case: 'decimalValue', value: '12345678901234567890.123456789' },
    });
    expect(typed.get('meta')).toEqual({
      kind: {
        $case: 'jsonText',
        value:
          '{"a": null, "b": 1, "c": {"x": false, "y": "é"}, "aa": [1.10, 12345678901234567890], "ab": 0, "é": 1500, "dup": 2}',
      },
    });
    expect(typed.get('doc')).toEqual({ kind: { $case: 'jsonText', value: '{"k":[1,2]}' } });
  });

  it('types UPDATE and DELETE with their old records', async () => {
    const update = await send(
      payload('UPDATE', '{"id": 1, "note": "new", "big": 5}', '{"id": 1, "note": "old"}'),
    );
    expect(update.status).toBe(200);
    const deleted = await send(payload('DELETE', null, '{"id": 1, "note": "new"}'));
    expect(deleted.status).toBe(200);
    const rows = await inboxRows(stack, sourceId);
    const u = typedChange(catalog, rows.find((r) => r.id === update.json.id)!.body);
    expect(u.operation).toBe(webhooks.Operation.OPERATION_UPDATE);
    expect(u.columns.map((c) => c.name)).toEqual(['id', 'big', 'note']);
    expect(u.record!.values).toEqual([
      { kind: { $case: 'intValue', value: 1n } },
      { kind: { $case: 'intValue', value: 5n } },
      { kind: { $case: 'stringValue', value: 'new' } },
    ]);
    // A column the old record does not carry is NULL there.
    expect(u.oldRecord!.values[1]).toEqual({ kind: undefined });
    const d = typedChange(catalog, rows.find((r) => r.id === deleted.json.id)!.body);
    expect(d.operation).toBe(webhooks.Operation.OPERATION_DELETE);
    expect(d.record).toBeUndefined();
    expect(rows.find((r) => r.id === deleted.json.id)!.change).toEqual({
      operation: 'DELETE',
      schema: 'public',
      table: 'wh_kinds',
    });
  });

  it('refuses payloads that do not fit with 422 naming the field, and stores none of them', async () => {
    const before = (await inboxRows(stack, sourceId)).length;
    const cases: [string, string][] = [
      [payload('INSERT', '{"id": 1}', null, 'nope'), 'table'],
      [payload('TRUNCATE', '{"id": 1}', null), 'type'],
      [payload('INSERT', '{"id": 1, "nope": 2}', null), 'record.nope'],
      [payload('INSERT', '{"id": 1, "small": 40000}', null), 'record.small'],
      [payload('INSERT', '{"id": 1, "big": "123"}', null), 'record.big'],
      [payload('INSERT', '{"id": 1.5}', null), 'record.id'],
      [payload('INSERT', '{"id": 1, "ratio": "abc"}', null), 'record.ratio'],
      [payload('INSERT', '{"id": 1, "flag": "yes"}', null), 'record.flag'],
      [payload('INSERT', '{"id": 1, "uid": "not-a-uuid"}', null), 'record.uid'],
      [payload('INSERT', '{"id": 1, "at": "2024-02-30T00:00:00+00:00"}', null), 'record.at'],
      [payload('INSERT', '{"id": 1, "day": "2023-02-29"}', null), 'record.day'],
      [payload('INSERT', '{"id": 1, "tags": ["a", 1]}', null), 'record.tags[1]'],
      [payload('INSERT', '{"id": 1, "grid": [[1, 2], [3, "x"]]}', null), 'record.grid[1][1]'],
      [payload('INSERT', '{"id": 1, "feeling": "angry"}', null), 'record.feeling'],
      [payload('INSERT', '{"id": 1, "note": null}', null), 'record.note'],
      [payload('INSERT', '{"id": 1, "data": "zz"}', null), 'record.data'],
      [payload('INSERT', '{"id": 1, "note": {"a": 1}}', null), 'record.note'],
      [payload('UPDATE', 'null', '{"id": 1}'), 'record'],
      [payload('DELETE', 'null', 'null'), 'old_record'],
      [payload('INSERT', '[1]', null), 'record'],
    ];
    for (const [body, field] of cases) {
      const answer = await send(body);
      expect(answer.status, body).toBe(422);
      expect(answer.json.error.code, body).toBe('invalid_change');
      expect(answer.json.error.field, body).toBe(field);
      expect(answer.json.error.message, body).toEqual(expect.any(String));
    }
    const malformed = await send('{"type": "INSERT",');
    expect(malformed.status).toBe(400);
    expect(malformed.json.error.code).toBe('malformed_json');
    expect((await send('[1, 2]')).json.error).toEqual({
      code: 'malformed_json',
      message: expect.any(String),
    });
    expect(await inboxRows(stack, sourceId)).toHaveLength(before);
  });

  it('typedChange throws ChangeMisfit when the catalog no longer fits a stored body', () => {
    expect(() => typedChange(catalog, payload('INSERT', '{"id": 1, "gone": 1}', null))).toThrow(ChangeMisfit);
    expect(() => typedChange(catalog, Buffer.from('not json'))).toThrow(ChangeMisfit);
  });
});

it('writes JSON numbers as PostgreSQL prints numeric and jsonb', async () => {
  const numbers = [
    '1',
    '-0',
    '-0.0',
    '1.10',
    '1e2',
    '1.50e1',
    '1.5e-3',
    '-2.5E+3',
    '0.000',
    '123e-1',
    '0e5',
    '-1.0e0',
  ];
  for (const text of numbers) {
    const { rows } = await stack.pool.query<{ n: string; j: string }>(
      'select $1::text::numeric::text as n, $1::text::jsonb::text as j',
      [text],
    );
    expect(numericText(text), text).toBe(rows[0]!.n);
    expect(numericText(text), text).toBe(rows[0]!.j);
  }
});

it('stores two identical supabase payloads as two events (pg_net never resends; both are changes)', async () => {
  const body = payload('UPDATE', '{"id": 7, "note": "B"}', '{"id": 7, "note": "A"}');
  const first = await send(body);
  const second = await send(body);
  expect(first.status).toBe(200);
  expect(second.status).toBe(200);
  expect(second.json.duplicate).toBe(false);
  expect(second.json.id).not.toBe(first.json.id);
});

it('authenticates by a Standard Webhooks signature when the source says so, under its webhook-id', async () => {
  const secret = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;
  const signedName = sourceName('supasigned');
  const id = await createSource(stack, {
    name: signedName,
    kind: 'supabase-database',
    secrets: [secret],
    settings: { supabase: { auth: 'standard-webhooks' } },
  });
  const body = payload('INSERT', '{"id": 8}', null);
  const msgId = 'msg_supabase_signed';
  const at = Math.floor(Date.now() / 1000);
  const headers = {
    'webhook-id': msgId,
    'webhook-timestamp': String(at),
    'webhook-signature': new Webhook(secret).sign(msgId, new Date(at * 1000), body),
  };
  const url = `/webhooks/${signedName}`;
  // The shared-secret header alone is not enough for this source.
  expect((await post(stack.httpUrl, url, body, { 'x-webhook-secret': secret })).status).toBe(401);
  const answer = await post(stack.httpUrl, url, body, headers);
  expect(answer).toMatchObject({ status: 200, json: { external_id: msgId, duplicate: false } });
  expect((await post(stack.httpUrl, url, body, headers)).json.duplicate).toBe(true);
  const rows = await inboxRows(stack, id);
  expect(rows).toHaveLength(1);
  expect(rows[0]!.headers['webhook-id']).toBe(msgId);
});

it('reads only the payload own keys (a column named "constructor" absent from old_record is NULL)', async () => {
  await stack.pool.query(
    'create table public.wh_odd (id int primary key, "constructor" text, "toString" int)',
  );
  const odd = await loadCatalog(stack.db.url, ['public'], ['authenticated']);
  const change = typedChange(
    odd,
    '{"type":"UPDATE","schema":"public","table":"wh_odd","record":{"id":1,"constructor":"x","toString":2},"old_record":{"id":1}}',
  );
  expect(change.columns.map((c) => c.name)).toEqual(['id', 'constructor', 'toString']);
  expect(change.oldRecord!.values).toEqual([
    { kind: { $case: 'intValue', value: 1n } },
    { kind: undefined },
    { kind: undefined },
  ]);
  expect(change.record!.values[1]).toEqual({ kind: { $case: 'stringValue', value: 'x' } });
});
