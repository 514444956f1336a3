import { execFileSync } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { signToken } from '@sluice/auth';
import { data } from '@sluice/proto';
import {
  ACME,
  AUTHENTICATOR_PASSWORD,
  announceSkip,
  createTestDatabase,
  type Daemon,
  findExecutable,
  freePort,
  GLOBEX,
  startDaemon,
  TEST_JWT_SECRET,
  type TestDatabase,
  USERS,
  waitFor,
} from '@sluice/testing';
import { createChannel, createClientFactory, Metadata, Status } from 'nice-grpc';
import { errorDetailsClientMiddleware } from 'nice-grpc-error-details';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDataConfig } from '../services/data/src/config';
import { type DataServer, startDataServer } from '../services/data/src/server';
import { expectRejection } from '../services/data/test/expect-rejection';
import { type DataClient, startStack, type TestStack } from '../services/data/test/helpers';
import { eq, records, row, type SelectReq, V } from '../services/data/test/wire-values';

// Issue 8, part 6: the data service through PgBouncer in transaction pool mode (the Debian
// package's binary, started here on a free loopback port in front of the suite's PostgreSQL).
// Skipped, loudly, when pgbouncer is not installed (.ci/run installs it).
//
// What transaction pooling demands of a client, and how the data service meets it:
// - No session state may outlive a transaction: role, JWT claims, statement timeout and trace id
//   are set with set_config(..., true) (transaction-local); proven below over ONE server
//   connection (default_pool_size = 1) that every request of every user shares.
// - No named prepared statements (PgBouncer < 1.21 does not track them; a statement prepared on
//   one server connection is missing on the next, or already there for another client):
//   DB_PREPARED_STATEMENTS=0.
// - Startup parameters PgBouncer does not track are refused at connect ("unsupported startup
//   parameter"): the pool sends `options` (-c TimeZone/DateStyle/IntervalStyle) and
//   `idle_in_transaction_session_timeout`; PgBouncer must ignore them
//   (ignore_startup_parameters) and the login role carries those settings instead (ALTER ROLE
//   ... SET), which the type_samples comparison below checks value for value.
// The events service needs a session (LISTEN, long snapshots) and connects directly.

const PGBOUNCER = findExecutable('pgbouncer');

/** The role-level settings that replace the pool's ignored startup parameters. */
const ROLE_SETTINGS = [
  "timezone = 'UTC'",
  "datestyle = 'ISO'",
  "intervalstyle = 'iso_8601'",
  'idle_in_transaction_session_timeout = 60000',
];

function pgbouncerVersion(binary: string): string {
  const out = execFileSync(binary, ['--version']).toString();
  return /PgBouncer (\S+)/.exec(out)?.[1] ?? 'unknown';
}

if (!PGBOUNCER) {
  describe('data service through PgBouncer (transaction mode)', () => {
    it.skip(
      announceSkip(
        'test/pgbouncer.test.ts',
        'no `pgbouncer` binary on PATH or in /usr/sbin (Debian: apt-get install --no-install-recommends pgbouncer; .ci/run does this as root)',
      ),
      () => {},
    );
  });
} else {
  const binary = PGBOUNCER;
  let db: TestDatabase;
  let dir = '';
  let bouncer: Daemon | undefined;
  let bouncerPort = 0;
  let server: DataServer | undefined;
  let channel: ReturnType<typeof createChannel> | undefined;
  let direct: TestStack | undefined;
  const clients: Record<string, DataClient> = {};

  const token = (user: keyof typeof USERS | 'service') =>
    user === 'service'
      ? signToken(TEST_JWT_SECRET, { role: 'service_role' }, { expiresIn: 600 })
      : signToken(TEST_JWT_SECRET, { sub: USERS[user], role: 'authenticated' }, { expiresIn: 600 });

  /** A URL through PgBouncer as the service's login role. */
  const viaBouncer = () =>
    `postgres://sluice_authenticator:${AUTHENTICATOR_PASSWORD}@127.0.0.1:${bouncerPort}/${db.name}`;

  /** A data service whose pool goes through PgBouncer. */
  const startThroughBouncer = (env: Record<string, string>) =>
    startDataServer(
      loadDataConfig({
        DATABASE_URL: viaBouncer(),
        // The catalog's LISTEN session (reload after DDL) connects directly, as documented.
        DATABASE_SESSION_URL: db.appUrl,
        DATA_GRPC_ADDRESS: '127.0.0.1:0',
        JWT_SECRET: TEST_JWT_SECRET,
        LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
        SHUTDOWN_GRACE_MS: '2000',
        // More client connections than PgBouncer has server connections: requests interleave.
        DB_POOL_MAX: '4',
        ...env,
      }),
    );

  beforeAll(async () => {
    db = await createTestDatabase();
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    try {
      await admin.query(`
        create function public.pgb_whoami() returns jsonb language sql volatile as $$
          select jsonb_build_object(
            'user', current_user,
            'claims', current_setting('request.jwt.claims', true),
            'pid', pg_backend_pid())
        $$;
        grant execute on function public.pgb_whoami() to anon, authenticated, service_role;
        create function public.pgb_slow(seconds float8) returns void language sql volatile
          as $$ select pg_sleep(seconds) $$;
        grant execute on function public.pgb_slow(float8) to authenticated;
        alter role sluice_authenticator in database ${db.name} set ${ROLE_SETTINGS.join(`;
        alter role sluice_authenticator in database ${db.name} set `)};`);
    } finally {
      await admin.end();
    }

    // PgBouncer refuses to run as root; it then runs as `postgres` (-u), who must read its files.
    dir = mkdtempSync(path.join(tmpdir(), 'sluice-pgbouncer-'));
    const upstream = new URL(db.url);
    bouncerPort = await freePort();
    writeFileSync(path.join(dir, 'userlist.txt'), `"sluice_authenticator" "${AUTHENTICATOR_PASSWORD}"\n`);
    writeFileSync(
      path.join(dir, 'pgbouncer.ini'),
      [
        '[databases]',
        `${db.name} = host=${upstream.hostname} port=${upstream.port} dbname=${db.name}`,
        '[pgbouncer]',
        'listen_addr = 127.0.0.1',
        `listen_port = ${bouncerPort}`,
        'unix_socket_dir =',
        'auth_type = plain',
        `auth_file = ${path.join(dir, 'userlist.txt')}`,
        'pool_mode = transaction',
        // One server connection for every client: each request of every user runs on it, in turn.
        // (No max_db_connections: PgBouncer forwards a cancel request on a connection of its own,
        // beyond the pool size, which a database-wide cap of 1 would queue behind the query.)
        'default_pool_size = 1',
        'max_client_conn = 100',
        'ignore_startup_parameters = options,idle_in_transaction_session_timeout',
        'server_reset_query =',
        'logfile =',
        'pidfile =',
        '',
      ].join('\n'),
    );
    const asRoot = process.getuid?.() === 0;
    if (asRoot) {
      const uid = Number(execFileSync('id', ['-u', 'postgres']).toString());
      const gid = Number(execFileSync('id', ['-g', 'postgres']).toString());
      for (const f of ['', 'userlist.txt', 'pgbouncer.ini']) chownSync(path.join(dir, f), uid, gid);
    }
    bouncer = startDaemon(binary, [...(asRoot ? ['-u', 'postgres'] : []), path.join(dir, 'pgbouncer.ini')]);
    const daemon = bouncer;
    await waitFor(
      'PgBouncer to accept connections',
      async () => {
        const c = new pg.Client({ connectionString: viaBouncer() });
        c.on('error', () => {});
        try {
          await c.connect();
          await c.query('select 1');
          return true;
        } finally {
          await c.end().catch(() => {});
        }
      },
      {
        timeoutMs: 15_000,
        context: () => `pgbouncer ${pgbouncerVersion(binary)} output:\n${daemon.output()}`,
      },
    );

    server = await startThroughBouncer({ DB_PREPARED_STATEMENTS: '0' });
    channel = createChannel(`127.0.0.1:${server.port}`);
    const factory = createClientFactory().use(errorDetailsClientMiddleware);
    const client = async (user?: keyof typeof USERS | 'service') => {
      const metadata = Metadata(user ? { authorization: `Bearer ${await token(user)}` } : {});
      return factory.create(data.DataServiceDefinition, channel!, { '*': { metadata } });
    };
    for (const user of ['alice', 'bob', 'carol', 'service'] as const) clients[user] = await client(user);
    clients.anon = await client();
    // The oracle for values: the same template database served directly.
    direct = await startStack();
  }, 60_000);

  afterAll(async () => {
    channel?.close();
    await server?.close();
    await direct?.close();
    await bouncer?.stop();
    await db?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const c = (name: string) => clients[name]!;

  async function selectAll(client: DataClient, table: string, req: SelectReq = {}) {
    const res = await client.select({ table, limit: 1000, order: [{ column: 'id' }], ...req });
    return records(res.result);
  }
  const ids = (rows: Record<string, unknown>[]) => rows.map((r) => r.id);

  describe(`data service through PgBouncer ${pgbouncerVersion(binary)} (transaction mode, DB_PREPARED_STATEMENTS=0)`, () => {
    it('Select under RLS: each user sees only their tenant', async () => {
      expect(ids(await selectAll(c('alice'), 'posts', { columns: ['id'] }))).toEqual(
        Array.from({ length: 10 }, (_, i) => BigInt(i + 1)),
      );
      expect(ids(await selectAll(c('bob'), 'posts', { columns: ['id'] }))).toEqual(
        Array.from({ length: 10 }, (_, i) => BigInt(i + 11)),
      );
      expect(ids(await selectAll(c('alice'), 'tenants'))).toEqual([ACME]);
    });

    it('every type reads exactly as it does without PgBouncer (the role carries the session settings)', async () => {
      const through = await c('service').select({ table: 'type_samples', order: [{ column: 'id' }] });
      const service = direct!.client(await direct!.token('service'));
      const straight = await service.select({ table: 'type_samples', order: [{ column: 'id' }] });
      expect(through.result?.rows.length).toBeGreaterThan(0);
      expect(through.result).toEqual(straight.result);
    });

    it('Insert, Update and Delete under RLS: the other tenant neither sees nor changes the row', async () => {
      const inserted = await c('alice').insert({
        table: 'posts',
        columns: ['tenant_id', 'title'],
        rows: [row(V.str(ACME), V.str('through pgbouncer'))],
        returning: ['id'],
      });
      const id = records(inserted.result)[0]?.id as bigint;
      expect(typeof id).toBe('bigint');
      expect(await selectAll(c('bob'), 'posts', { filter: eq('id', V.int(id)) })).toEqual([]);
      const bobUpdate = await c('bob').update({
        table: 'posts',
        set: [{ column: 'title', value: V.str('bob was here') }],
        filter: eq('id', V.int(id)),
      });
      expect(bobUpdate.affected).toBe(0n);
      const bobDelete = await c('bob').delete({ table: 'posts', filter: eq('id', V.int(id)) });
      expect(bobDelete.affected).toBe(0n);
      await expectRejection(
        c('alice').insert({
          table: 'posts',
          columns: ['tenant_id', 'title'],
          rows: [row(V.str(GLOBEX), V.str('planted by alice'))],
        }),
        { code: Status.PERMISSION_DENIED, reason: 'SLUICE_RLS_VIOLATION' },
      );
      const aliceUpdate = await c('alice').update({
        table: 'posts',
        set: [{ column: 'title', value: V.str('renamed through pgbouncer') }],
        filter: eq('id', V.int(id)),
        returning: ['title'],
      });
      expect(records(aliceUpdate.result)).toEqual([{ title: 'renamed through pgbouncer' }]);
      const aliceDelete = await c('alice').delete({ table: 'posts', filter: eq('id', V.int(id)) });
      expect(aliceDelete.affected).toBe(1n);
    });

    it('a Transaction is all or nothing', async () => {
      const insert = (title: string) => ({
        kind: {
          $case: 'insert' as const,
          value: { table: 'posts', columns: ['tenant_id', 'title'], rows: [row(V.str(ACME), V.str(title))] },
        },
      });
      const ok = await c('alice').transaction({ operations: [insert('pgb tx 1'), insert('pgb tx 2')] });
      expect(ok.results).toHaveLength(2);
      const titles = (t: string) => selectAll(c('alice'), 'posts', { filter: eq('title', V.str(t)) });
      expect(await titles('pgb tx 1')).toHaveLength(1);
      expect(await titles('pgb tx 2')).toHaveLength(1);
      const tenant = (name: string, slug: string) => ({
        kind: {
          $case: 'insert' as const,
          value: { table: 'tenants', columns: ['name', 'slug'], rows: [row(V.str(name), V.str(slug))] },
        },
      });
      const rejection = await expectRejection(
        c('service').transaction({ operations: [tenant('Rolled back', 'pgb-tx'), tenant('Acme 2', 'acme')] }),
        { code: Status.ALREADY_EXISTS, reason: 'SLUICE_UNIQUE_VIOLATION' },
      );
      expect(rejection.metadata.operation_index).toBe('1');
      expect(await selectAll(c('service'), 'tenants', { filter: eq('slug', V.str('pgb-tx')) })).toEqual([]);
    });

    it('SelectStream reads through a cursor in chunks, the same rows as Select', async () => {
      const query = { table: 'posts', columns: ['id', 'title'], order: [{ column: 'id' }] };
      const got: Record<string, unknown>[] = [];
      let chunks = 0;
      for await (const msg of c('alice').selectStream({ query, chunkSize: 3 })) {
        chunks++;
        got.push(...records({ columns: query.columns.map((name) => ({ name, type: '' })), rows: msg.rows }));
      }
      const selected = await selectAll(c('alice'), 'posts', query);
      expect(selected.length).toBeGreaterThanOrEqual(10);
      expect(got).toEqual(selected);
      expect(chunks).toBe(Math.ceil(selected.length / 3));
    });

    it('errors map as without PgBouncer', async () => {
      await expectRejection(
        c('service').insert({
          table: 'tenants',
          columns: ['name', 'slug'],
          rows: [row(V.str('Acme again'), V.str('acme'))],
        }),
        { code: Status.ALREADY_EXISTS, reason: 'SLUICE_UNIQUE_VIOLATION' },
      );
      await expectRejection(c('alice').select({ table: 'no_such_table' }), {
        code: Status.INVALID_ARGUMENT,
        reason: 'SLUICE_UNKNOWN_TABLE',
      });
      await expectRejection(
        c('carol').insert({
          table: 'posts',
          columns: ['tenant_id', 'title'],
          rows: [row(V.str(ACME), V.str('x'))],
        }),
        { code: Status.PERMISSION_DENIED },
      );
    });

    it('no session state leaks: interleaved requests of different users on one server connection', async () => {
      const who = async (name: string) => {
        const res = await c(name).call({ function: 'pgb_whoami' });
        const value = records(res.result)[0]?.pgb_whoami as string;
        return JSON.parse(value) as { user: string; claims: string | null; pid: number };
      };
      const expected: Record<string, { user: string; sub: string | undefined }> = {
        alice: { user: 'authenticated', sub: USERS.alice },
        bob: { user: 'authenticated', sub: USERS.bob },
        carol: { user: 'authenticated', sub: USERS.carol },
        service: { user: 'service_role', sub: undefined },
        anon: { user: 'anon', sub: undefined },
      };
      const order = Array.from({ length: 60 }, (_, i) => Object.keys(expected)[i % 5]!);
      const seen = await Promise.all(order.map(async (name) => ({ name, ...(await who(name)) })));
      for (const s of seen) {
        const claims = s.claims ? (JSON.parse(s.claims) as { sub?: string }) : {};
        expect({ name: s.name, user: s.user, sub: claims.sub }).toEqual({
          name: s.name,
          ...expected[s.name],
        });
      }
      // They all ran on the one server connection PgBouncer has.
      expect(new Set(seen.map((s) => s.pid)).size).toBe(1);

      // And between requests that connection holds nothing of theirs: a plain client through
      // PgBouncer gets the same backend as the login role, with no claims and no timeout left.
      const plain = new pg.Client({ connectionString: viaBouncer() });
      await plain.connect();
      try {
        const r = await plain.query<{ usr: string; claims: string | null; timeout: string; pid: number }>(
          `select current_user as usr, current_setting('request.jwt.claims', true) as claims,
                  current_setting('statement_timeout') as timeout, pg_backend_pid() as pid`,
        );
        expect(r.rows[0]).toEqual({
          usr: 'sluice_authenticator',
          claims: '',
          timeout: '0',
          pid: seen[0]?.pid,
        });
      } finally {
        await plain.end();
      }
    });

    it('with prepared statements on (the default) requests fail: named statements do not survive transaction pooling', async () => {
      const prepared = await startThroughBouncer({});
      const ch = createChannel(`127.0.0.1:${prepared.port}`);
      try {
        const alice = createClientFactory().create(data.DataServiceDefinition, ch, {
          '*': { metadata: Metadata({ authorization: `Bearer ${await token('alice')}` }) },
        });
        // Concurrent calls open several pool connections, all served by PgBouncer's one server
        // connection: a name one of them prepared is "already there" for the next.
        const outcomes = await Promise.allSettled(
          Array.from({ length: 12 }, () => alice.select({ table: 'posts', columns: ['id'], limit: 1 })),
        );
        const failures = outcomes.flatMap((o) => (o.status === 'rejected' ? [String(o.reason)] : []));
        expect(failures.length).toBeGreaterThan(0);
        expect(failures[0]).toMatch(/prepared statement "sluice_\w+" (already exists|does not exist)/);
      } finally {
        ch.close();
        await prepared.close();
      }
    });

    it('a cancelled call stops its statement on the server', async () => {
      const admin = new pg.Client({ connectionString: db.url }); // directly, not through PgBouncer
      await admin.connect();
      const running = async () => {
        const { rows } = await admin.query<{ n: number }>(
          `select count(*)::int as n from pg_stat_activity
            where datname = current_database() and state = 'active' and query like '%pgb_slow%'
              and pid <> pg_backend_pid()`,
        );
        return rows[0]?.n ?? 0;
      };
      try {
        const abort = new AbortController();
        const call = c('alice').call(
          { function: 'pgb_slow', args: [{ name: 'seconds', value: V.double(4) }] },
          { signal: abort.signal },
        );
        call.catch(() => {});
        await waitFor('the slow statement to run', async () => (await running()) === 1, { timeoutMs: 5_000 });
        abort.abort();
        await expect(call).rejects.toThrow();
        const cancelledAt = performance.now();
        await waitFor('the statement to stop', async () => (await running()) === 0, { timeoutMs: 6_000 });
        // Directly, the service cancels it within milliseconds (services/data/test/cancellation.test.ts).
        expect(performance.now() - cancelledAt).toBeLessThan(1_500);
      } finally {
        await admin.end();
      }
    });

    // Through transaction pooling a LISTEN runs on whichever server connection serves that one
    // statement, and the NOTIFY after DDL never reaches it: the catalog listener connects
    // directly (DATABASE_SESSION_URL), so schema changes still reach the service.
    it('DDL reaches the catalog (the LISTEN session for schema changes)', async () => {
      const admin = new pg.Client({ connectionString: db.url });
      await admin.connect();
      try {
        await admin.query(`create function public.pgb_added() returns int language sql stable as 'select 1';
                           grant execute on function public.pgb_added() to authenticated;`);
      } finally {
        await admin.end();
      }
      await waitFor(
        'the data service to see a function created after it started',
        async () => (await c('alice').describeSchema({})).functions.some((f) => f.name === 'pgb_added'),
        { timeoutMs: 5_000, intervalMs: 50 },
      );
    });
  });
}
