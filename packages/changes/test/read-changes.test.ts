import { setTimeout as delay } from 'node:timers/promises';
import { createPool } from '@sluice/db';
import { createTestDatabase, type TestDatabase } from '@sluice/testing';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Change,
  capturedTables,
  comparePositions,
  currentPosition,
  latestPosition,
  type Position,
  parseSnapshot,
  readChanges,
  snapshotPosition,
} from '../src/index';
import { appPool, createProbeTable, superClient } from './helpers';

let db: TestDatabase;
let pool: pg.Pool;
let admin: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase();
  pool = appPool(db);
  admin = await superClient(db);
  await admin.query(`set timezone = 'UTC'`);
  await createProbeTable(admin);
});

afterAll(async () => {
  await admin?.end();
  await pool?.end();
  await db?.drop();
});

function marker(change: Change): string | null {
  const i = change.fields.findIndex((f) => f.name === 'marker');
  return change.record[i] ?? null;
}

/** Reads until `done` holds for what was read (or the deadline passes), `limit` at a time. */
async function readUntil(
  after: Position,
  done: (changes: Change[]) => boolean,
  limit = 100,
  deadlineMs = 5_000,
): Promise<{ changes: Change[]; until: Position }> {
  const changes: Change[] = [];
  let until = after;
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const batch = await readChanges(pool, until, limit);
    changes.push(...batch.changes);
    until = batch.until;
    if (batch.changes.length === limit) continue;
    if (done(changes) || Date.now() > deadline) return { changes, until };
    await delay(10);
  }
}

describe('capture', () => {
  it('logs inserts, updates and deletes with keys, changed columns, actor, tenant and trace', async () => {
    const start = await currentPosition(pool);
    const sub = 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa';
    await admin.query('begin');
    await admin.query(
      "select set_config('request.jwt.claims', $1, true), set_config('sluice.trace_id', 'trace-123', true)",
      [JSON.stringify({ sub, tenant_id: 'claim-tenant', role: 'authenticated' })],
    );
    await admin.query(
      `insert into change_probe (marker, tenant_id, n, ts) values
         ('cap-1', 'row-tenant', 9007199254740993, '2024-05-06 07:08:09.123456+00'),
         ('cap-2', null, -1, null)`,
    );
    await admin.query('commit');
    await admin.query(`update change_probe set n = n + 1, tenant_id = tenant_id where marker = 'cap-1'`);
    await admin.query(`delete from change_probe where marker = 'cap-2'`);

    const { changes } = await readUntil(start, (c) => c.length >= 4);
    const own = changes.filter((c) => c.table === 'change_probe');
    expect(own.map((c) => [c.op, marker(c)])).toEqual([
      ['INSERT', 'cap-1'],
      ['INSERT', 'cap-2'],
      ['UPDATE', 'cap-1'],
      ['DELETE', 'cap-2'],
    ]);
    const [ins1, ins2, upd, del] = own as [Change, Change, Change, Change];
    const expected = await admin.query<{ id: string; n: string; ts: string }>(
      `select id::text, n::text, ts::text from change_probe where marker = 'cap-1'`,
    );
    const row = expected.rows[0]!;
    expect(ins1.schema).toBe('public');
    expect(ins1.fields.map((f) => f.name)).toEqual(['id', 'marker', 'tenant_id', 'n', 'ts']);
    expect(ins1.fields[3]?.dataTypeID).toBe(20);
    expect(ins1.record).toEqual([
      row.id,
      'cap-1',
      'row-tenant',
      '9007199254740993',
      '2024-05-06 07:08:09.123456+00',
    ]);
    expect(ins1.oldRecord).toBeNull();
    expect(ins1.pk).toEqual({ id: row.id });
    expect(ins1.actor).toBe(sub);
    expect(ins1.tenantId).toBe('row-tenant'); // the row's own tenant_id wins over the claim
    expect(ins2.tenantId).toBe('claim-tenant'); // no tenant_id in the row: the claim
    expect(ins1.traceId).toBe('trace-123');
    expect(ins1.changedColumns).toEqual([]);
    expect(ins1.committedAt).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?\+00$/);
    expect(comparePositions(ins1.position, ins2.position)).toBeLessThan(0);
    expect(ins1.xid).toBe(ins2.xid);

    expect(upd.record[3]).toBe(row.n);
    expect(row.n).toBe('9007199254740994');
    expect(upd.oldRecord?.[3]).toBe('9007199254740993');
    expect(upd.changedColumns).toEqual(['n']);
    expect(upd.actor).toBeNull(); // written outside a request
    expect(upd.traceId).toBeNull();

    expect(del.record).toEqual(del.oldRecord);
    expect(del.record[1]).toBe('cap-2');
    expect(del.pk).toEqual({ id: ins2.pk.id });
  });

  it('decodes every reference type exactly as the table prints it', async () => {
    const start = await currentPosition(pool);
    const columns =
      'i2, i4, i8, f4, f8, num, flag, label, vc, uid, ts, ts_local, d, t, iv, js, jsb, bin, tags, ints, mood';
    await admin.query(
      `insert into type_samples (${columns}) values
         (-32768, 2147483647, 9223372036854775807, 1.1, 0.1, 123456789012345678901234567890.000000001, true,
          'tab\tquote"', 'v', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '1999-12-31 23:59:59.999999+00',
          '2000-01-01 00:00:00.000001', '2024-02-29', '23:59:59.999999', '1 year 2 mons 3 days 04:05:06.789',
          '{"b": 1, "a": [1.0]}', '{"b": 1, "a": [1.0]}', '\\x00ff', '{"a b",null,c}', '{9007199254740993}', 'sad')`,
    );
    const { changes } = await readUntil(start, (c) => c.some((x) => x.table === 'type_samples'));
    const change = changes.find((c) => c.table === 'type_samples')!;
    // The table's own text output, in the same session settings as the pool.
    const direct = createPool({
      connectionString: db.url,
      max: 1,
      min: 0,
      idleTimeoutMs: 1000,
      maxLifetimeSeconds: 0,
      acquireTimeoutMs: 5000,
      applicationName: 'direct',
    });
    try {
      const { rows, fields } = await direct.query({
        text: `select * from type_samples where id = $1`,
        values: [change.pk.id],
        rowMode: 'array',
      });
      expect(change.fields).toEqual(fields.map((f) => ({ name: f.name, dataTypeID: f.dataTypeID })));
      // json (not jsonb) is the one exception: the log stores rows as jsonb, which normalizes it.
      const js = fields.findIndex((f) => f.name === 'js');
      const expected = [...(rows[0] as (string | null)[])];
      expected[js] = '{"a": [1.0], "b": 1}';
      expect(change.record).toEqual(expected);
    } finally {
      await direct.end();
    }
  });

  it('lists captured tables, refuses a table without a primary key, and can disable capture', async () => {
    const tables = await capturedTables(pool);
    for (const t of [
      'posts',
      'tenants',
      'tenant_memberships',
      'profiles',
      'projects',
      'documents',
      'document_shares',
      'type_samples',
      'change_probe',
    ]) {
      expect(tables.has(`public.${t}`)).toBe(true);
    }
    await admin.query('create table public.no_pk (a int)');
    await expect(admin.query(`select sluice.enable_changes('public.no_pk')`)).rejects.toThrow(
      /has no primary key/,
    );
    await admin.query(`create table public.toggled (id int primary key)`);
    await admin.query(`select sluice.enable_changes('public.toggled')`);
    await admin.query(`select sluice.enable_changes('public.toggled')`); // idempotent
    expect((await capturedTables(pool)).has('public.toggled')).toBe(true);
    const enabled = await pool.query(`select sluice.changes_enabled('public.toggled')::text as on`);
    expect(enabled.rows[0].on).toBe('true');
    await admin.query(`select sluice.disable_changes('public.toggled')`);
    expect((await capturedTables(pool)).has('public.toggled')).toBe(false);
    const start = await currentPosition(pool);
    await admin.query('insert into public.toggled values (1)');
    const { changes } = await readUntil(start, () => false, 100, 200);
    expect(changes.filter((c) => c.table === 'toggled')).toEqual([]);
  });

  it('keeps the log from the request roles', async () => {
    for (const role of ['anon', 'authenticated', 'service_role']) {
      await admin.query('begin');
      try {
        await admin.query(`set local role ${role}`);
        await expect(admin.query('select * from sluice.change_log')).rejects.toThrow(/permission denied/);
      } finally {
        await admin.query('rollback');
      }
    }
    // ...while a request role's writes are still captured (security definer trigger).
    const start = await currentPosition(pool);
    await admin.query('begin');
    await admin.query(`set local role service_role`);
    await admin.query(`insert into type_samples (label) values ('by service_role')`);
    await admin.query('commit');
    const { changes } = await readUntil(start, (c) => c.some((x) => x.table === 'type_samples'));
    expect(changes.some((c) => c.table === 'type_samples')).toBe(true);
  });

  it('skips changes of a table that no longer exists', async () => {
    const start = await currentPosition(pool);
    await createProbeTable(admin, 'short_lived');
    await admin.query(`insert into short_lived (marker) values ('gone')`);
    await admin.query(`insert into change_probe (marker) values ('after-gone')`);
    await admin.query('drop table short_lived');
    const { changes } = await readUntil(start, (c) => c.some((x) => marker(x) === 'after-gone'));
    expect(changes.some((c) => c.table === 'short_lived')).toBe(false);
    expect(changes.some((c) => marker(c) === 'after-gone')).toBe(true);
  });
});

describe('reading under concurrency', () => {
  it('returns a change once its transaction commits, and never skips a lower id committing later', async () => {
    const a = await superClient(db);
    const b = await superClient(db);
    try {
      const start = await currentPosition(pool);
      await a.query('begin');
      await a.query(`insert into change_probe (marker) values ('order-A')`);
      await b.query('begin');
      await b.query(`insert into change_probe (marker) values ('order-B')`);
      await b.query('commit');

      // B has committed while A (lower xid and id) still runs: B is readable now, A is not.
      const first = await readUntil(start, (c) => c.some((x) => marker(x) === 'order-B'));
      expect(first.changes.map(marker)).toContain('order-B');
      expect(first.changes.map(marker)).not.toContain('order-A');

      await a.query('commit');
      const second = await readUntil(first.until, (c) => c.some((x) => marker(x) === 'order-A'));
      const own = second.changes.filter((c) => marker(c)?.startsWith('order-'));
      expect(own.map(marker)).toEqual(['order-A']);
      const b1 = first.changes.find((c) => marker(c) === 'order-B')!;
      expect(own[0]!.position.id < b1.position.id).toBe(true); // lower id, later window
      expect(comparePositions(b1.position, own[0]!.position)).toBeLessThan(0);
    } finally {
      await a.query('rollback').catch(() => {});
      await a.end();
      await b.end();
    }
  });

  it('orders two updates of one row by commit, not by transaction id', async () => {
    const t = await superClient(db);
    const u = await superClient(db);
    try {
      await admin.query(`insert into change_probe (marker, n) values ('row-order', 0)`);
      const start = await currentPosition(pool);
      // T takes the lower xid first, U updates the row and commits, then T updates U's version.
      await t.query('begin');
      await t.query(`insert into change_probe (marker) values ('row-order-xid')`);
      await u.query('begin');
      await u.query(`update change_probe set n = 1 where marker = 'row-order'`);
      const xids = await Promise.all([
        t.query<{ x: string }>('select pg_current_xact_id()::text as x'),
        u.query<{ x: string }>('select pg_current_xact_id()::text as x'),
      ]);
      expect(BigInt(xids[0].rows[0]!.x) < BigInt(xids[1].rows[0]!.x)).toBe(true);
      const tUpdate = t.query(`update change_probe set n = n * 10 + 2 where marker = 'row-order'`);
      await delay(50); // T now waits for U's row lock
      await u.query('commit');
      await tUpdate;
      await t.query('commit');

      const { changes } = await readUntil(
        start,
        (c) => c.filter((x) => marker(x) === 'row-order').length >= 2,
      );
      const updates = changes.filter((c) => marker(c) === 'row-order');
      const n = updates[0]!.fields.findIndex((f) => f.name === 'n');
      // U's update (n = 1) first, then T's (n = 12): the stream ends in the row's real state.
      expect(updates.map((c) => c.record[n])).toEqual(['1', '12']);
    } finally {
      await t.query('rollback').catch(() => {});
      await u.query('rollback').catch(() => {});
      await t.end();
      await u.end();
    }
  });

  it('delivers every committed change exactly once and no rolled-back one, with random writers', async () => {
    const start = await currentPosition(pool);
    const committed = new Set<string>();
    const rolledBack = new Set<string>();
    const received: string[] = [];
    let writing = true;

    async function writer(w: number): Promise<void> {
      const client = await superClient(db);
      try {
        for (let t = 0; t < 40; t++) {
          await client.query('begin');
          const markers: string[] = [];
          const rows = 1 + Math.floor(Math.random() * 3);
          for (let r = 0; r < rows; r++) {
            const m = `rnd-${w}-${t}-${r}`;
            markers.push(m);
            await client.query('insert into change_probe (marker) values ($1)', [m]);
            await delay(Math.random() * 10);
          }
          await delay(Math.random() * 10);
          if (Math.random() < 0.2) {
            await client.query('rollback');
            for (const m of markers) rolledBack.add(m);
          } else {
            await client.query('commit');
            for (const m of markers) committed.add(m);
          }
        }
      } finally {
        await client.end();
      }
    }

    async function reader(): Promise<void> {
      let until = start;
      let last: Position = start;
      const deadline = Date.now() + 12_000;
      while (Date.now() < deadline) {
        const limit = 1 + Math.floor(Math.random() * 7);
        const batch = await readChanges(pool, until, limit);
        for (const change of batch.changes) {
          expect(comparePositions(change.position, last)).toBeGreaterThan(0);
          last = change.position;
          const m = marker(change);
          if (change.table === 'change_probe' && m?.startsWith('rnd-')) received.push(m);
        }
        expect(comparePositions(batch.until, until)).toBeGreaterThanOrEqual(0);
        until = batch.until;
        if (!writing && batch.changes.length < limit && received.length >= committed.size) return;
        if (batch.changes.length < limit) await delay(5);
      }
    }

    const readerDone = reader();
    await Promise.all(Array.from({ length: 8 }, (_, w) => writer(w)));
    writing = false;
    await readerDone;

    expect(committed.size).toBeGreaterThan(100);
    expect(rolledBack.size).toBeGreaterThan(0);
    expect(received.filter((m) => rolledBack.has(m))).toEqual([]);
    expect(new Set(received).size).toBe(received.length);
    expect([...received].sort()).toEqual([...committed].sort());
  }, 20_000);

  it('skips changes visible in a snapshot and returns those committed after it', async () => {
    const inflight = await superClient(db);
    const reader = await superClient(db);
    try {
      const before = await latestPosition(pool);
      await inflight.query('begin');
      await inflight.query(`insert into change_probe (marker) values ('snap-inflight')`);
      await admin.query(`insert into change_probe (marker) values ('snap-before')`);
      await reader.query('begin isolation level repeatable read');
      const snap = await reader.query<{ s: string }>('select pg_current_snapshot()::text as s');
      const seen = await reader.query<{ marker: string }>(
        `select marker from change_probe where marker like 'snap-%' order by marker`,
      );
      await reader.query('commit');
      const snapshot = parseSnapshot(snap.rows[0]!.s);
      const after = await snapshotPosition(pool, before, snapshot);
      expect(seen.rows.map((r) => r.marker)).toEqual(['snap-before']);
      await admin.query(`insert into change_probe (marker) values ('snap-after')`);
      await inflight.query('commit');

      const through = after.cover!.throughWindow;
      const { changes, until } = await readUntil(
        after,
        (c) => c.filter((x) => marker(x)?.startsWith('snap-')).length >= 2,
        1,
      );
      const own = changes.filter((c) => marker(c)?.startsWith('snap-'));
      expect(own.map(marker).sort()).toEqual(['snap-after', 'snap-inflight']);
      for (const c of changes) {
        // Positions in windows the cover reaches carry it, so resuming from them keeps skipping.
        expect(c.position.cover !== undefined).toBe(c.position.window <= through);
      }
      expect(until.window > through).toBe(true);
      expect(until.cover).toBeUndefined();
    } finally {
      await inflight.query('rollback').catch(() => {});
      await inflight.end();
      await reader.end();
    }
  });
});

describe('change windows', () => {
  it('refuses to append a window inside a REPEATABLE READ transaction', async () => {
    await admin.query('begin isolation level repeatable read');
    try {
      await expect(admin.query('select sluice.append_change_window(true)')).rejects.toThrow(/READ COMMITTED/);
    } finally {
      await admin.query('rollback');
    }
  });

  it('appends a window only when changes committed since the last one, unless forced', async () => {
    await currentPosition(pool); // everything so far is in a window
    const none = await admin.query<{ seq: string | null }>(
      'select sluice.append_change_window()::text as seq',
    );
    expect(none.rows[0]?.seq).toBeNull();
    await admin.query(`insert into change_probe (marker) values ('window-1')`);
    const one = await admin.query<{ seq: string | null }>(
      'select sluice.append_change_window()::text as seq',
    );
    expect(one.rows[0]?.seq).not.toBeNull();
    const forced = await admin.query<{ seq: string }>(
      'select sluice.append_change_window(true)::text as seq',
    );
    expect(BigInt(forced.rows[0]!.seq)).toBe(BigInt(one.rows[0]!.seq!) + 1n);
    const empty = await admin.query<{ first_id: string; last_id: string }>(
      'select first_id::text, last_id::text from sluice.change_window where seq = $1::bigint',
      [forced.rows[0]!.seq],
    );
    expect(BigInt(empty.rows[0]!.first_id) > BigInt(empty.rows[0]!.last_id)).toBe(true);
  });
});
