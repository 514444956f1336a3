import { setTimeout as delay } from 'node:timers/promises';
import { signToken } from '@sluice/auth';
import { purgeChanges } from '@sluice/changes';
import { Operator } from '@sluice/proto';
import { Status } from 'nice-grpc';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectSubscribeRejected } from './expect-status';
import {
  ACME,
  type EventsClient,
  type EventsStack,
  startEventsStack,
  TEST_JWT_SECRET,
  USERS,
} from './helpers';
import { cond, eq, OpenStream, recordOf, type SubscribeReq, V } from './open-stream';

// Every bad request must end the stream with a precise status and reason before any change.

let stack: EventsStack;
let admin: pg.Client;
let alice: EventsClient;
let service: EventsClient;

const fromNow = { $case: 'fromNow' as const, value: true };
const posts = (extra: Partial<SubscribeReq['tables'] extends (infer T)[] | undefined ? T : never> = {}) => ({
  tables: [{ table: 'posts', ...extra }],
  start: fromNow,
});

/** Opens a stream and returns the position of its first heartbeat (the stream is then live). */
async function livePosition(client: EventsClient, request: SubscribeReq = posts()): Promise<string> {
  const s = new OpenStream(client, request);
  try {
    await s.waitFor((x) => x.heartbeats.length > 0, 10_000, 'a heartbeat');
    return s.heartbeats[0]?.position ?? '';
  } finally {
    await s.cancel();
  }
}

/** Retries `attempt` until it stops throwing (the catalog reloads asynchronously after DDL). */
async function eventually(attempt: () => Promise<unknown>, what: string): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await attempt();
      return;
    } catch (error) {
      if (i > 100) throw new Error(`${what}: ${String(error)}`);
      await delay(50);
    }
  }
}

beforeAll(async () => {
  stack = await startEventsStack({ EVENTS_HEARTBEAT_MS: '100' });
  admin = new pg.Client({ connectionString: stack.db.url });
  await admin.connect();
  await admin.query(`
    create table public.uncaptured (id int primary key, note text);
    grant select on public.uncaptured to authenticated;
    -- A column-level grant: authenticated may read id and note of secrets, not secret.
    create table public.secrets (id int primary key, note text, secret text);
    grant select (id, note) on public.secrets to authenticated;
    select sluice.enable_changes('public.secrets');
    -- authenticated may read note but not the key: its events could not even carry the key.
    create table public.keyhidden (id int primary key, note text);
    grant select (note) on public.keyhidden to authenticated;
    select sluice.enable_changes('public.keyhidden');
    -- anon's policy calls a function anon may not execute: anon's check fails, nobody else's.
    create function public.fragile_ok(note text) returns boolean language sql stable as 'select true';
    revoke execute on function public.fragile_ok(text) from public;
    create table public.fragile (id int primary key, note text);
    alter table public.fragile enable row level security;
    create policy fragile_anon on public.fragile for select to anon using (public.fragile_ok(note));
    create policy fragile_member on public.fragile for select to authenticated using (true);
    grant select on public.fragile to anon, authenticated;
    select sluice.enable_changes('public.fragile');
  `);
  alice = stack.eventsClient(await stack.token('alice'));
  service = stack.eventsClient(await stack.token('service'));
});

afterAll(async () => {
  await admin?.end();
  await stack?.close();
});

describe('unknown names', () => {
  it('unknown table', async () => {
    const r = await expectSubscribeRejected(
      alice,
      { tables: [{ table: 'nope' }], start: fromNow },
      { code: Status.INVALID_ARGUMENT, reason: 'SLUICE_UNKNOWN_TABLE' },
    );
    expect(r.fields).toContain('tables[0].table');
    // A table outside the exposed schemas is unknown too, not a hint that it exists.
    await expectSubscribeRejected(
      alice,
      { tables: [{ schema: 'sluice', table: 'change_log' }], start: fromNow },
      { code: Status.INVALID_ARGUMENT, reason: 'SLUICE_UNKNOWN_TABLE' },
    );
  });

  it('unknown column in the projection', async () => {
    const r = await expectSubscribeRejected(alice, posts({ columns: ['id', 'nope'] }), {
      code: Status.INVALID_ARGUMENT,
      reason: 'SLUICE_UNKNOWN_COLUMN',
    });
    expect(r.fields).toContain('tables[0].columns[1]');
  });

  it('unknown column in the filter', async () => {
    const r = await expectSubscribeRejected(alice, posts({ filter: eq('nope', V.int(1)) }), {
      code: Status.INVALID_ARGUMENT,
      reason: 'SLUICE_UNKNOWN_COLUMN',
    });
    expect(r.fields.some((f) => f.startsWith('tables[0].filter'))).toBe(true);
  });
});

describe('request shape', () => {
  it('empty tables list', async () => {
    await expectSubscribeRejected(
      alice,
      { tables: [], start: fromNow },
      { code: Status.INVALID_ARGUMENT, reason: 'SLUICE_TABLES_REQUIRED' },
    );
  });

  it('unsupported operator (LIKE)', async () => {
    const r = await expectSubscribeRejected(
      alice,
      posts({ filter: cond('title', Operator.OPERATOR_LIKE, V.str('A%')) }),
      { code: Status.INVALID_ARGUMENT, reason: 'SLUICE_OPERATOR_NOT_SUPPORTED' },
    );
    expect(r.fields.some((f) => f.startsWith('tables[0].filter'))).toBe(true);
  });
});

describe('capture', () => {
  it('a table without change capture', async () => {
    // Until the catalog reloads the table is unknown; then it is known but not captured.
    await eventually(
      () =>
        expectSubscribeRejected(
          alice,
          { tables: [{ table: 'uncaptured' }], start: fromNow },
          { code: Status.FAILED_PRECONDITION, reason: 'SLUICE_CAPTURE_DISABLED' },
        ),
      'uncaptured never reported as SLUICE_CAPTURE_DISABLED',
    );
  });
});

describe('column privileges', () => {
  const secrets = (extra: object = {}): SubscribeReq => ({
    tables: [{ table: 'secrets', ...extra }],
    start: fromNow,
  });

  it('a readable column is accepted; events carry only the columns the role may read', async () => {
    let position = '';
    await eventually(async () => {
      position = await livePosition(alice, secrets({ filter: eq('note', V.str('x')) }));
    }, 'secrets never became subscribable');
    expect(position).not.toBe('');
    const s = new OpenStream(alice, secrets());
    await s.ready();
    await admin.query(`insert into public.secrets values (1, 'visible', 'hidden')`);
    await s.waitFor((x) => x.changes.length > 0, 10_000, 'the secrets insert');
    const event = s.changes[0];
    expect(event?.columns.map((c) => c.name)).toEqual(['id', 'note']);
    expect(recordOf(event as never)).toEqual({ id: 1n, note: 'visible' });
    expect(JSON.stringify(s.messages, (_, v) => (typeof v === 'bigint' ? v.toString() : v))).not.toContain(
      'hidden',
    );
    await s.cancel();
  });

  it('a filter on a column the role cannot read', async () => {
    await expectSubscribeRejected(alice, secrets({ filter: eq('secret', V.str('hidden')) }), {
      code: Status.PERMISSION_DENIED,
    });
  });

  it('a table whose key columns the role cannot read is refused up front', async () => {
    let r: Awaited<ReturnType<typeof expectSubscribeRejected>> | undefined;
    await eventually(async () => {
      r = await expectSubscribeRejected(
        alice,
        { tables: [{ table: 'keyhidden', columns: ['note'] }], start: fromNow },
        { code: Status.PERMISSION_DENIED, reason: 'SLUICE_COLUMN_NOT_ALLOWED' },
      );
    }, 'keyhidden never became known');
    expect(r?.fields).toContain('tables[0].table');
  });

  it('a subscriber whose visibility check fails ends alone; other streams go on', async () => {
    const fragile: SubscribeReq = { tables: [{ table: 'fragile' }], start: fromNow };
    await eventually(() => livePosition(alice, fragile), 'fragile never became subscribable');
    const anon = new OpenStream(stack.eventsClient(), fragile);
    const member = new OpenStream(alice, fragile);
    await Promise.all([anon.ready(), member.ready()]);
    try {
      await admin.query(`insert into public.fragile values (1, 'a')`);
      await anon.done;
      expect(anon.error).toMatchObject({ code: Status.UNAVAILABLE });
      await admin.query(`insert into public.fragile values (2, 'b')`);
      await member.waitFor((x) => x.changes.length === 2, 10_000, 'both inserts');
      expect(member.ended).toBe(false);
      expect(member.changes.map((e) => recordOf(e)?.id)).toEqual([1n, 2n]);
    } finally {
      await Promise.all([anon.cancel(), member.cancel()]);
    }
  });

  it('a projection of a column the role cannot read', async () => {
    await expectSubscribeRejected(alice, secrets({ columns: ['id', 'secret'] }), {
      code: Status.PERMISSION_DENIED,
    });
  });
});

describe('tokens', () => {
  it('a token signed with another key', async () => {
    const forged = await signToken(
      'another-secret-that-is-long-enough-for-hs256',
      { sub: USERS.alice, role: 'authenticated' },
      { expiresIn: 600 },
    );
    await expectSubscribeRejected(stack.eventsClient(forged), posts(), {
      code: Status.UNAUTHENTICATED,
      reason: 'SLUICE_TOKEN_INVALID',
    });
  });

  it('an expired token', async () => {
    const now = Math.floor(Date.now() / 1000);
    const expired = await signToken(TEST_JWT_SECRET, {
      sub: USERS.alice,
      role: 'authenticated',
      iat: now - 7200,
      exp: now - 3600,
    });
    await expectSubscribeRejected(stack.eventsClient(expired), posts(), {
      code: Status.UNAUTHENTICATED,
      reason: 'SLUICE_TOKEN_EXPIRED',
    });
  });
});

describe('positions', () => {
  const from = (position: string): SubscribeReq => ({
    tables: [{ table: 'posts' }],
    start: { $case: 'fromPosition', value: position },
  });

  it('malformed positions', async () => {
    for (const bad of ['', 'not a position!', 'abc', Buffer.alloc(40).toString('base64url')]) {
      const r = await expectSubscribeRejected(alice, from(bad), {
        code: Status.INVALID_ARGUMENT,
        reason: 'SLUICE_INVALID_POSITION',
      });
      expect(r.fields).toContain('from_position');
    }
  });

  it('a forged position (payload tampered, or signed elsewhere) is refused; the real one is accepted', async () => {
    const real = await livePosition(alice);
    // The real position opens a stream.
    expect(await livePosition(alice, from(real))).not.toBe('');
    const bytes = Buffer.from(real, 'base64url');
    // Move the position's id (bytes 10..17) back: "resume from before changes I should not skip".
    const tampered = Buffer.from(bytes);
    tampered.writeBigUInt64BE(0n, 10);
    tampered.writeBigUInt64BE(0n, 2);
    expect(tampered.equals(bytes)).toBe(false);
    await expectSubscribeRejected(alice, from(tampered.toString('base64url')), {
      code: Status.INVALID_ARGUMENT,
      reason: 'SLUICE_INVALID_POSITION',
    });
    // A flipped MAC bit alone is refused too.
    const badMac = Buffer.from(bytes);
    badMac[badMac.length - 1] = (badMac[badMac.length - 1] ?? 0) ^ 1;
    await expectSubscribeRejected(alice, from(badMac.toString('base64url')), {
      code: Status.INVALID_ARGUMENT,
      reason: 'SLUICE_INVALID_POSITION',
    });
  });

  it('an expired position (older than retention) is OUT_OF_RANGE', async () => {
    const old = await livePosition(service);
    await admin.query(
      `insert into public.posts (tenant_id, author_id, title) values ('${ACME}', '${USERS.alice}', 'to be purged')`,
    );
    // Wait until the change is committed and readable past `old`.
    const s = new OpenStream(service, from(old));
    await s.waitFor((x) => x.changes.length > 0, 10_000, 'the change before the purge');
    await s.cancel();
    const pool = new pg.Pool({ connectionString: stack.db.appUrl });
    try {
      expect(await purgeChanges(pool, 0)).toBeGreaterThan(0);
    } finally {
      await pool.end();
    }
    const r = await expectSubscribeRejected(service, from(old), {
      code: Status.OUT_OF_RANGE,
      reason: 'SLUICE_POSITION_EXPIRED',
    });
    expect(r.message).toMatch(/retention/);
    // A position from now is still fine.
    expect(await livePosition(service)).not.toBe('');
  });
});
