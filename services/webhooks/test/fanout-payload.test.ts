import { Filter, Operator } from '@sluice/proto';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { messageId } from '../src/ids';
import { generateSecret } from '../src/secrets';
import {
  createEndpoint,
  fannedOut,
  messagesOf,
  type StoredMessage,
  startReceiver,
  waitUntil,
} from './fanout-support';
import { ACME, GLOBEX, startWebhooksStack, USERS, type WebhooksStack } from './helpers';

// What a row-change message holds: the Supabase database-webhook shape (type, schema, table,
// record, old_record) plus position and commit time, values exactly as PostgreSQL's to_jsonb
// wrote them (no digit lost), the columns and old rows the owner may see, event types, ordering
// and FIFO keys, and the selection's tables, operations and filter.

let stack: WebhooksStack;
let receiver: Awaited<ReturnType<typeof startReceiver>>;

const ALICE = { sub: USERS.alice, role: 'authenticated', tenant_id: ACME };

beforeAll(async () => {
  stack = await startWebhooksStack();
  receiver = await startReceiver();
  await stack.pool.query(`
    create table public.fo_cols (
      id bigint primary key,
      tenant_id uuid,
      shown text,
      secret text
    );
    alter table public.fo_cols enable row level security;
    create policy fo_cols_read on public.fo_cols for select to authenticated using (true);
    grant select (id, tenant_id, shown) on public.fo_cols to authenticated;
    grant all on public.fo_cols to service_role;
    select sluice.enable_changes('public.fo_cols');
  `);
});

afterAll(async () => {
  await stack?.close();
  await receiver?.close();
});

const label = (s: string) =>
  Filter.toJSON({
    kind: {
      $case: 'condition',
      value: {
        column: 'label',
        op: Operator.OPERATOR_EQ,
        value: { kind: { $case: 'stringValue', value: s } },
        values: [],
        textSearchConfig: '',
      },
    },
  });

async function settled(endpointId: string, count: number): Promise<StoredMessage[]> {
  await fannedOut(stack.pool);
  const messages = await messagesOf(stack.pool, endpointId);
  expect(messages.length, `messages of ${endpointId}`).toBe(count);
  return messages;
}

describe('row-change payloads', () => {
  it('carry every value exactly as to_jsonb wrote it (bigint, numeric, float, json, arrays, bytea, timestamps)', async () => {
    const service = await createEndpoint(stack.pool, receiver.url, {
      ownerRole: 'service_role',
      tables: [{ schema: 'public', table: 'type_samples', operations: [] }],
    });
    // Written as SQL literals: exact digits in, the same digits out.
    const { rows } = await stack.pool.query<{ id: string }>(
      `insert into public.type_samples (tenant_id, i2, i4, i8, f4, f8, num, flag, label, vc, uid, ts, ts_local, d, t, iv, js, jsb, bin, tags, ints, mood)
       values ($1, -32768, 2147483647, 9223372036854775807, 1.5, 0.1, 123456789012345678901234567890.000000000000000001000,
               true, 'é "quoted" \\ line', 'vc', 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee', '2026-01-02T03:04:05.123456Z',
               '2026-01-02 03:04:05.5', '2026-01-02', '10:11:12', '1 day 2 hours', null,
               '{"a": null, "n": 12345678901234567890.5, "s": "x"}', '\\x00ff10', '{a,"b c",NULL}', '{9223372036854775807,-1}', 'happy')
       returning id`,
      [ACME],
    );
    const id = (rows[0] as { id: string }).id;
    const [message] = await settled(service, 1);
    const m = message as StoredMessage;
    // The record is the row's to_jsonb, key for key and digit for digit (compared as text).
    const { rows: expected } = await stack.pool.query<{ record: string }>(
      `select to_jsonb(x)::text as record from public.type_samples x where x.id = $1`,
      [id],
    );
    const { rows: sent } = await stack.pool.query<{ record: string }>(
      `select (payload -> 'record')::text as record from sluice_webhooks.messages where id = $1`,
      [m.id],
    );
    expect(sent[0]?.record).toBe(expected[0]?.record);
    expect(m.payloadText).toContain('"i8": 9223372036854775807');
    expect(m.payloadText).toContain('"num": 123456789012345678901234567890.000000000000000001000');
    expect(m.payloadText).toContain('"n": 12345678901234567890.5');
    expect(m.payloadText).toContain('"ints": [9223372036854775807, -1]');
    expect(m.payload.record).toMatchObject({
      f8: 0.1,
      js: null,
      jsb: { a: null, s: 'x' },
      tags: ['a', 'b c', null],
      bin: '\\x00ff10',
      mood: 'happy',
      d: '2026-01-02',
      t: '10:11:12',
      ts_local: '2026-01-02T03:04:05.5',
      label: 'é "quoted" \\ line',
    });
    expect(Object.keys(m.payload.record ?? {})).toContain('js');
    expect(m.payload).toMatchObject({
      type: 'INSERT',
      schema: 'public',
      table: 'type_samples',
      old_record: null,
      position: m.changePosition,
    });
    expect(m.payload.commit_timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    expect(Math.abs(Date.parse(m.payload.commit_timestamp) - Date.now())).toBeLessThan(120_000);
    expect(m.eventType).toBe('row.inserted');
    expect(m.tenantId).toBeNull();
    expect(m.deliveries).toEqual([{ endpointId: service, fifoKey: null, tenantId: null }]);
    await stack.pool.query('update sluice_webhooks.endpoints set enabled = false where id = $1', [service]);
  });

  it('give a service_role owner the old row in full; an RLS owner gets no old row on UPDATE and the key only on DELETE', async () => {
    const service = await createEndpoint(stack.pool, receiver.url, {
      ownerRole: 'service_role',
      tables: [{ schema: 'public', table: 'type_samples', operations: [] }],
    });
    const alice = await createEndpoint(stack.pool, receiver.url, {
      tenantId: ACME,
      ownerRole: 'authenticated',
      ownerClaims: ALICE,
      tables: [{ schema: 'public', table: 'type_samples', operations: [] }],
      ordering: 'key',
    });
    const { rows } = await stack.pool.query<{ id: string }>(
      `insert into public.type_samples (tenant_id, i8, label) values ($1, 1, 'one') returning id`,
      [ACME],
    );
    const id = (rows[0] as { id: string }).id;
    await stack.pool.query(`update public.type_samples set i8 = 2, label = 'two' where id = $1`, [id]);
    await stack.pool.query(`delete from public.type_samples where id = $1`, [id]);

    const s = await settled(service, 3);
    expect(s.map((m) => [m.eventType, m.payload.type])).toEqual([
      ['row.inserted', 'INSERT'],
      ['row.updated', 'UPDATE'],
      ['row.deleted', 'DELETE'],
    ]);
    expect(s[1]?.payload.record).toMatchObject({ id: Number(id), i8: 2, label: 'two' });
    expect(s[1]?.payload.old_record).toMatchObject({ id: Number(id), i8: 1, label: 'one' });
    expect(s[2]?.payload.record).toBeNull();
    expect(s[2]?.payload.old_record).toMatchObject({ id: Number(id), i8: 2, label: 'two' });
    expect(Object.keys(s[2]?.payload.old_record ?? {}).length).toBeGreaterThan(10);

    const a = await settled(alice, 3);
    expect(a[0]?.payload.record).toMatchObject({ id: Number(id), i8: 1 });
    expect(a[1]?.payload.old_record).toBeNull();
    expect(a[2]?.payload.record).toBeNull();
    expect(a[2]?.payload.old_record).toEqual({ id: Number(id) });
    // Tenant endpoint: its messages and deliveries are the tenant's; FIFO by the row's key.
    const key = `public.type_samples:{"id": ${id}}`;
    for (const m of a) {
      expect(m.tenantId).toBe(ACME);
      expect(m.orderingKey).toBe(key);
      expect(m.deliveries).toEqual([{ endpointId: alice, fifoKey: key, tenantId: ACME }]);
    }
    // Positions strictly increase and the payload's position is the message's.
    for (const m of [...s, ...a]) expect(m.payload.position).toBe(m.changePosition);
    expect(a.map((m) => m.changePosition)).toEqual(s.map((m) => m.changePosition));
    await stack.pool.query('update sluice_webhooks.endpoints set enabled = false where id = any($1)', [
      [service, alice],
    ]);
  });

  it('leave out the columns the owner may not SELECT (column privileges), but not for service_role', async () => {
    const service = await createEndpoint(stack.pool, receiver.url, {
      ownerRole: 'service_role',
      tables: [{ schema: 'public', table: 'fo_cols', operations: [] }],
    });
    const alice = await createEndpoint(stack.pool, receiver.url, {
      tenantId: ACME,
      ownerRole: 'authenticated',
      ownerClaims: ALICE,
      tables: [{ schema: 'public', table: 'fo_cols', operations: [] }],
    });
    // anon may not read the table at all; a disabled endpoint receives nothing either.
    const anon = await createEndpoint(stack.pool, receiver.url, {
      ownerRole: 'anon',
      ownerClaims: { role: 'anon' },
      tables: [{ schema: 'public', table: 'fo_cols', operations: [] }],
    });
    const disabled = await createEndpoint(stack.pool, receiver.url, {
      ownerRole: 'service_role',
      tables: [{ schema: 'public', table: 'fo_cols', operations: [] }],
      enabled: false,
    });
    await stack.pool.query(`insert into public.fo_cols values (1, $1, 'shown', 'hidden')`, [ACME]);
    await stack.pool.query(`update public.fo_cols set secret = 'still hidden', shown = 'again' where id = 1`);
    const s = await settled(service, 2);
    expect(s[0]?.payload.record).toEqual({ id: 1, tenant_id: ACME, shown: 'shown', secret: 'hidden' });
    expect(s[1]?.payload.old_record).toEqual({ id: 1, tenant_id: ACME, shown: 'shown', secret: 'hidden' });
    const a = await settled(alice, 2);
    expect(a[0]?.payload.record).toEqual({ id: 1, tenant_id: ACME, shown: 'shown' });
    expect(a[1]?.payload.record).toEqual({ id: 1, tenant_id: ACME, shown: 'again' });
    expect(a.map((m) => m.payloadText).join()).not.toContain('hidden');
    expect(await messagesOf(stack.pool, anon)).toEqual([]);
    expect(await messagesOf(stack.pool, disabled)).toEqual([]);
  });

  it('honour the selection: tables, operations and the filter (in memory and in SQL)', async () => {
    const inserts = await createEndpoint(stack.pool, receiver.url, {
      ownerRole: 'service_role',
      tables: [{ schema: 'public', table: 'type_samples', operations: ['INSERT'], filter: label('pick') }],
      ordering: 'tenant',
    });
    // jsonb equality is decided by PostgreSQL (not in memory): the SQL filter path.
    const json = await createEndpoint(stack.pool, receiver.url, {
      tenantId: GLOBEX,
      ownerRole: 'authenticated',
      ownerClaims: { sub: USERS.bob, role: 'authenticated', tenant_id: GLOBEX },
      tables: [
        {
          schema: 'public',
          table: 'type_samples',
          operations: ['UPDATE', 'DELETE'],
          filter: Filter.toJSON({
            kind: {
              $case: 'condition',
              value: {
                column: 'jsb',
                op: Operator.OPERATOR_EQ,
                value: { kind: { $case: 'jsonText', value: '{"k": "pick"}' } },
                values: [],
                textSearchConfig: '',
              },
            },
          }),
        },
      ],
    });
    const ids: string[] = [];
    for (const l of ['pick', 'skip', 'pick']) {
      const { rows } = await stack.pool.query<{ id: string }>(
        `insert into public.type_samples (tenant_id, label, jsb) values ($1, $2, jsonb_build_object('k', $2::text)) returning id`,
        [GLOBEX, l],
      );
      ids.push((rows[0] as { id: string }).id);
    }
    await stack.pool.query(
      `update public.type_samples set label = 'pick', jsb = '{"k": "pick"}' where id = $1`,
      [ids[1]],
    );
    await stack.pool.query(
      `update public.type_samples set label = 'other', jsb = '{"k": "other"}' where id = $1`,
      [ids[0]],
    );
    await stack.pool.query(`delete from public.type_samples where id = any($1)`, [ids]);
    // A table the endpoints did not select.
    await stack.pool.query(`insert into public.fo_cols values (2, $1, 'x', 'y')`, [GLOBEX]);

    const i = await settled(inserts, 2);
    expect(i.map((m) => [m.payload.type, String(m.payload.record?.id)])).toEqual([
      ['INSERT', ids[0]],
      ['INSERT', ids[2]],
    ]);
    expect(i[0]?.deliveries[0]?.fifoKey).toBe(GLOBEX);
    const l = await settled(json, 3);
    // The update to 'pick' matches, the one to 'other' does not; DELETE filters on the old row
    // (id 0 was 'other' when deleted, ids 1 and 2 'pick').
    expect(l.map((m) => [m.payload.type, String(m.payload.record?.id ?? m.payload.old_record?.id)])).toEqual([
      ['UPDATE', ids[1]],
      ['DELETE', ids[1]],
      ['DELETE', ids[2]],
    ]);
  });

  it('an endpoint created or changed is used from the next batch on', async () => {
    const id = await createEndpoint(stack.pool, receiver.url, {
      ownerRole: 'service_role',
      tables: [{ schema: 'public', table: 'fo_cols', operations: ['DELETE'] }],
    });
    await stack.pool.query(`insert into public.fo_cols values (10, null, 'a', 'b')`);
    await settled(id, 0);
    await stack.pool.query(
      `update sluice_webhooks.endpoints set tables = '[{"schema":"public","table":"fo_cols","operations":["INSERT"]}]' where id = $1`,
      [id],
    );
    const started = Date.now();
    await stack.pool.query(`insert into public.fo_cols values (11, null, 'a', 'b')`);
    const messages = await waitUntil('the insert message', async () => {
      const m = await messagesOf(stack.pool, id);
      return m.length > 0 ? m : undefined;
    });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(messages.map((m) => m.payload.record?.id)).toEqual([11]);
  });

  it("reach a real receiver signed per Standard Webhooks, the body's data exactly the stored payload", async () => {
    const own = await startReceiver();
    try {
      const id = await createEndpoint(stack.pool, own.url, {
        ownerRole: 'service_role',
        tables: [{ schema: 'public', table: 'type_samples', operations: ['INSERT'], filter: label('e2e') }],
      });
      const secret = generateSecret();
      await stack.pool.query('insert into sluice_webhooks.secrets (endpoint_id, secret) values ($1, $2)', [
        id,
        secret,
      ]);
      await stack.pool.query(
        `insert into public.type_samples (label, i8, num) values ('e2e', 9007199254740993, 0.10000000000000000000000001)`,
      );
      const [message] = await settled(id, 1);
      const request = await waitUntil('the delivery', async () => own.requests[0]);
      // Verified by the official library; the body's data is the stored payload, digits and all.
      const body = new Webhook(secret).verify(request.body, request.headers) as {
        type: string;
        data: unknown;
      };
      expect(body.type).toBe('row.inserted');
      expect(request.headers['webhook-id']).toBe(messageId((message as StoredMessage).id));
      expect(request.body).toMatch(/"i8": ?9007199254740993[,}]/);
      expect(request.body).toMatch(/"num": ?0\.10000000000000000000000001[,}]/);
      const { rows } = await stack.pool.query<{ same: boolean }>(
        `select (($1::jsonb) -> 'data') = payload as same from sluice_webhooks.messages where id = $2`,
        [request.body, (message as StoredMessage).id],
      );
      expect(rows[0]?.same).toBe(true);
    } finally {
      await own.close();
    }
  });
});
