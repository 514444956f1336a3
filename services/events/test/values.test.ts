import type { Value } from '@sluice/proto';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ACME, type EventsStack, startEventsStack } from './helpers';

// Change events decode values with the data service's decodeValue: JSON null must arrive as JSON
// null (not SQL NULL), and timestamps beyond years 1-9999 as the instants PostgreSQL stored.

let stack: EventsStack;
beforeAll(async () => {
  stack = await startEventsStack();
});
afterAll(async () => {
  await stack?.close();
});

const ts = (seconds: bigint, nanos = 0): Value => ({
  kind: { $case: 'timestampValue', value: { seconds, nanos } },
});

/** The record of the first change event after inserting one type_samples row with `values`. */
async function changeFor(columns: string[], values: string[]): Promise<readonly Value[]> {
  const alice = stack.eventsClient(await stack.token('alice'));
  const controller = new AbortController();
  const stream = alice.subscribe(
    { tables: [{ table: 'type_samples', columns }], start: { $case: 'fromNow', value: true } },
    { signal: controller.signal },
  );
  const iterator = stream[Symbol.asyncIterator]();
  const admin = new pg.Client({ connectionString: stack.db.url });
  await admin.connect();
  const placeholders = values.map((_, i) => `$${i + 2}`).join(', ');
  const writer = setTimeout(() => {
    void admin.query(
      `insert into public.type_samples (tenant_id, ${columns.join(', ')}) values ($1, ${placeholders})`,
      [ACME, ...values],
    );
  }, 300);
  try {
    for (;;) {
      const { value } = await iterator.next();
      const m = value?.message;
      if (m?.$case === 'change') return m.value.record?.values ?? [];
    }
  } finally {
    clearTimeout(writer);
    controller.abort();
    await admin.end();
  }
}

it('timestamps BC and beyond year 9999 arrive as the instants PostgreSQL stored', async () => {
  const record = await changeFor(
    ['ts', 'ts_local'],
    ['0044-03-15 12:00:00.25+00 BC', '12345-01-01 00:00:00'],
  );
  expect(record).toEqual([ts(-63517780800n, 250_000_000), ts(327403382400n)]);
});

it('json arrives as its text and SQL NULL as no kind', async () => {
  const record = await changeFor(['jsb', 'js'], ['{"a": null, "n": 12345678901234567890}', null as never]);
  expect(record).toEqual([
    { kind: { $case: 'jsonText', value: '{"a": null, "n": 12345678901234567890}' } },
    { kind: undefined },
  ]);
});

// to_jsonb(new) writes SQL NULL as JSON null: capture leaves SQL NULL json columns out of the
// logged row (core migration 000004), so the two stay apart through the change log.
it('a json or jsonb column holding JSON null arrives as JSON null, not SQL NULL', async () => {
  expect(await changeFor(['jsb', 'js'], ['null', 'null'])).toEqual([
    { kind: { $case: 'jsonText', value: 'null' } },
    { kind: { $case: 'jsonText', value: 'null' } },
  ]);
  expect(await changeFor(['jsb', 'js'], [null as never, null as never])).toEqual([
    { kind: undefined },
    { kind: undefined },
  ]);
});
