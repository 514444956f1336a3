import { data, type Filter, Operator, type Value } from '@sluice/proto';
import { Status } from 'nice-grpc';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectStatus, expectSubscribeRejected } from './expect-status';
import { appendWindow, type EventsStack, startEventsStack } from './helpers';
import { cond, type OpenStream, openWhenKnown, recordOf, type SubscribeReq } from './open-stream';
import { decodePosition } from './stream-collector';

// A filter selects the same rows in Select, in a Subscribe snapshot and on the live stream —
// also where memory cannot compare as PostgreSQL does: text under a locale's or a
// case-insensitive collation, jsonb, types without an in-memory domain (inet). Each filter is
// run in all three places over the same rows, and the three id sets must be equal.

const SCHEMA = `
  create collation parity_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
  create table public.parity (
    id int primary key,
    t_c text collate "C",
    t_icu text collate "und-x-icu",
    t_ci text collate parity_ci,
    t_def text,
    j jsonb,
    addr inet
  );
  grant select on public.parity to authenticated;
  select sluice.enable_changes('public.parity');
`;

const WORDS = ['abc', 'ABC', 'Abc', 'b', 'B', 'a', 'A', 'é', 'e', 'E', 'z', 'Z', '', 'ab', 'a b', '_', '1'];
const JSONS = [
  'null',
  '{}',
  '[]',
  '""',
  '0',
  '0.0',
  '1e2',
  '100',
  '{"a": 1}',
  '{"a": 1.0}',
  '"x"',
  'true',
  null,
];
const ADDRS = ['10.0.0.1', '10.0.0.1/32', '10.0.0.0/8', '::1', null];

const str = (s: string): Value => ({ kind: { $case: 'stringValue', value: s } });
const json = (s: string): Value => ({ kind: { $case: 'jsonText', value: s } });

const FILTERS: [string, Filter][] = [];
for (const column of ['t_c', 't_icu', 't_ci', 't_def']) {
  for (const [name, op] of [
    ['EQ', Operator.OPERATOR_EQ],
    ['NEQ', Operator.OPERATOR_NEQ],
    ['LT', Operator.OPERATOR_LT],
    ['GTE', Operator.OPERATOR_GTE],
  ] as const) {
    for (const word of ['abc', 'b', 'B', 'e', ''])
      FILTERS.push([`${column} ${name} '${word}'`, cond(column, op, str(word))]);
  }
  FILTERS.push([
    `${column} IN (ABC, z)`,
    cond(column, Operator.OPERATOR_IN, undefined, [str('ABC'), str('z')]),
  ]);
}
for (const text of ['null', '{}', '[]', '0', '100', '""', '{"a":1}']) {
  FILTERS.push([`j EQ ${text}`, cond('j', Operator.OPERATOR_EQ, json(text))]);
  FILTERS.push([`j NEQ ${text}`, cond('j', Operator.OPERATOR_NEQ, json(text))]);
}
for (const a of ['10.0.0.1', '10.0.0.1/32', '::1'])
  FILTERS.push([`addr EQ ${a}`, cond('addr', Operator.OPERATOR_EQ, str(a))]);

let stack: EventsStack;
let admin: pg.Client;
let token: string;

beforeAll(async () => {
  // A live stream per filter, all as alice: more than the default per-identity cap.
  stack = await startEventsStack({
    EVENTS_HEARTBEAT_MS: '100',
    EVENTS_MAX_SUBSCRIPTIONS_PER_IDENTITY: '500',
  });
  admin = new pg.Client({ connectionString: stack.db.url });
  await admin.connect();
  await admin.query(SCHEMA);
  token = await stack.token('alice');
});

afterAll(async () => {
  await admin?.end();
  await stack?.close();
});

const ROWS = WORDS.map((w, i) => ({
  id: i + 1,
  text: w,
  j: JSONS[i % JSONS.length] ?? null,
  addr: ADDRS[i % ADDRS.length] ?? null,
}));

async function insertRows(offset: number): Promise<void> {
  for (const r of ROWS) {
    await admin.query('insert into public.parity values ($1, $2, $2, $2, $2, $3, $4)', [
      r.id + offset,
      r.text,
      r.j,
      r.addr,
    ]);
  }
}

const ids = (values: unknown[]) => values.map((v) => Number(v)).sort((a, b) => a - b);

/** A stream as alice (the catalog reloads after the DDL above). */
const open = (request: SubscribeReq) => openWhenKnown(stack.eventsClient(token), request);

describe('filters select the same rows in Select, the snapshot and the live stream', () => {
  it('text under C, ICU, case-insensitive and default collations; jsonb; inet', async () => {
    await insertRows(0);
    const client = stack.dataClient(token);
    // A snapshot per filter, one after the other (snapshots are capped per identity), then a
    // live stream per filter, all open while the same rows are written again.
    const snapshotIds: number[][] = [];
    for (const [, filter] of FILTERS) {
      const snapshot = await open({
        tables: [{ table: 'parity', filter }],
        start: { $case: 'snapshot', value: true },
      });
      await snapshot.waitFor(
        (x) => x.messages.some((m) => m.message?.$case === 'snapshotEnd'),
        10_000,
        'snapshot',
      );
      await snapshot.cancel();
      snapshotIds.push(
        ids(
          snapshot.messages.flatMap((m) => {
            if (m.message?.$case !== 'snapshotRow') return [];
            const row = m.message.value;
            const i = row.columns.findIndex((c) => c.name === 'id');
            return [(row.record?.values[i]?.kind as { value: bigint } | undefined)?.value];
          }),
        ),
      );
    }
    const live = await Promise.all(
      FILTERS.map(([, filter]) =>
        open({ tables: [{ table: 'parity', filter }], start: { $case: 'fromNow', value: true } }),
      ),
    );
    try {
      await insertRows(1000);
      // Every committed change is in a window at or before this one; a stream whose heartbeat
      // is past it has been sent everything it will get from the writes above.
      const end = await appendWindow(admin);
      const passed = (s: OpenStream) =>
        s.heartbeats.some((h) => decodePosition(h.position).window >= end.window);
      let differences = 0;
      for (const [n, [name, filter]] of FILTERS.entries()) {
        const selected = await client.select({
          table: 'parity',
          columns: ['id'],
          filter,
          order: [{ column: 'id', direction: data.SortDirection.SORT_DIRECTION_ASC }],
          limit: 1000,
        });
        const want = ids(
          (selected.result?.rows ?? []).map(
            (r) => (r.values[0]?.kind as { value: bigint } | undefined)?.value,
          ),
        ).filter((id) => id < 1000);
        const stream = live[n] as OpenStream;
        await stream.waitFor(passed, 20_000, `a heartbeat past the writes (${name})`);
        const liveIds = ids(stream.changes.map((e) => recordOf(e)?.id)).map((id) => id - 1000);
        expect(snapshotIds[n], `snapshot: ${name}`).toEqual(want);
        expect(liveIds, `live: ${name}`).toEqual(want);
        if (want.length > 0 && want.length < ROWS.length) differences++;
      }
      // The filters really discriminate (not all-or-nothing).
      expect(differences).toBeGreaterThan(FILTERS.length / 2);
    } finally {
      await Promise.all(live.map((s) => s.cancel()));
    }
  });

  it('JSON filter values that say nothing are refused alike by Select and Subscribe', async () => {
    const client = stack.dataClient(token);
    const events = stack.eventsClient(token);
    // An empty google.protobuf.Value, and JSON text that is not JSON.
    const values: [string, Value][] = [
      ['an empty json_value', { kind: { $case: 'jsonValue', value: undefined } }],
      ['empty json_text', json('')],
      ['json_text that does not parse', json('{')],
    ];
    for (const [what, value] of values) {
      const filter = cond('j', Operator.OPERATOR_EQ, value);
      const selectError = await client.select({ table: 'parity', columns: ['id'], filter }).then(
        () => undefined,
        (e: unknown) => e,
      );
      const selected = expectStatus(selectError, { code: Status.INVALID_ARGUMENT });
      const subscribed = await expectSubscribeRejected(
        events,
        { tables: [{ table: 'parity', filter }], start: { $case: 'fromNow', value: true } },
        { code: Status.INVALID_ARGUMENT, reason: selected.reason },
      );
      expect(subscribed.reason, what).toBe(selected.reason);
    }
  });
});
