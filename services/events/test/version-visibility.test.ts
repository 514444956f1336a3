import { signToken } from '@sluice/auth';
import { events } from '@sluice/proto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EventsStack, startEventsStack, TEST_JWT_SECRET } from './helpers';
import { eq, type OpenStream, openWhenKnown, recordOf, type SubscribeReq, V } from './open-stream';

// The oracle for change-stream RLS: a subscriber receives a row version if and only if it could
// SELECT that version right after it was committed (for a DELETE: the row's last version just
// before it). Writes run one at a time; after each, every identity's view of the row is read
// with a plain SELECT under its role and claims, which is what it must be sent — live, and
// again when a stream catches up on the same changes later (when the rows look different).
//
// The table's policies cover what PostgreSQL combines: several permissive policies per role,
// a restrictive one, a policy for anon only, an ALL policy without USING (grants no reads), a
// write-only policy, claims read through auth.uid() and auth.tenant_id(). Rows change tenant,
// owner, status, share list and soft-delete state, so versions move in and out of view.

const TENANT_A = 'aaaa0000-0000-0000-0000-00000000000a';
const TENANT_B = 'bbbb0000-0000-0000-0000-00000000000b';
const U = {
  ann: '0a000000-0000-0000-0000-0000000000a1',
  ben: '0b000000-0000-0000-0000-0000000000b1',
  cat: '0c000000-0000-0000-0000-0000000000c1',
};

type Who = 'ann' | 'ben' | 'cat' | 'anon' | 'service';
const WHO: Who[] = ['ann', 'ben', 'cat', 'anon', 'service'];
const CLAIMS: Record<Who, { role: string; claims: Record<string, unknown> }> = {
  ann: { role: 'authenticated', claims: { sub: U.ann, role: 'authenticated', tenant_id: TENANT_A } },
  ben: { role: 'authenticated', claims: { sub: U.ben, role: 'authenticated', tenant_id: TENANT_B } },
  cat: { role: 'authenticated', claims: { sub: U.cat, role: 'authenticated', tenant_id: TENANT_A } },
  anon: { role: 'anon', claims: { role: 'anon' } },
  service: { role: 'service_role', claims: { role: 'service_role' } },
};

const SCHEMA = `
  create table public.vv_items (
    id bigint primary key,
    version integer not null,
    tenant_id uuid not null,
    owner_id uuid,
    status text not null,
    viewers uuid[] not null default '{}',
    deleted_at timestamptz,
    note text
  );
  alter table public.vv_items enable row level security;
  create policy vv_member on public.vv_items for select to authenticated
    using (tenant_id = (select auth.tenant_id()) and status <> 'draft');
  create policy vv_owner on public.vv_items for select to authenticated
    using (owner_id = (select auth.uid()));
  create policy vv_shared on public.vv_items for select to authenticated
    using ((select auth.uid()) = any (viewers));
  create policy vv_public on public.vv_items for select to anon
    using (status = 'published');
  create policy vv_live on public.vv_items as restrictive for select
    using (deleted_at is null or owner_id = (select auth.uid()));
  create policy vv_write on public.vv_items for insert to authenticated with check (true);
  create policy vv_all_without_using on public.vv_items for all to authenticated with check (true);
  grant select on public.vv_items to anon, authenticated;
  grant all on public.vv_items to service_role;
  select sluice.enable_changes('public.vv_items');
`;

let stack: EventsStack;
let admin: pg.Client;

beforeAll(async () => {
  stack = await startEventsStack({ EVENTS_HEARTBEAT_MS: '100', DB_POOL_MAX: '4' });
  admin = new pg.Client({ connectionString: stack.db.url });
  await admin.connect();
  await admin.query(SCHEMA);
});

afterAll(async () => {
  await admin?.end();
  await stack?.close();
});

function tokenOf(w: Who): Promise<string> | undefined {
  if (w === 'anon') return undefined;
  return signToken(TEST_JWT_SECRET, CLAIMS[w].claims, { expiresIn: 600 });
}

async function open(w: Who, request: SubscribeReq): Promise<OpenStream> {
  // The catalog reloads after the DDL above.
  return openWhenKnown(stack.eventsClient(await tokenOf(w)), request);
}

/** Whether `w` can SELECT row `id` now, with a plain query under its role and claims. */
async function canSee(w: Who, id: number): Promise<boolean> {
  await admin.query('begin read only');
  try {
    await admin.query(`select set_config('role', $1, true), set_config('request.jwt.claims', $2, true)`, [
      CLAIMS[w].role,
      JSON.stringify(CLAIMS[w].claims),
    ]);
    const r = await admin.query('select 1 from public.vv_items where id = $1', [id]);
    return r.rows.length === 1;
  } finally {
    await admin.query('rollback');
  }
}

/** A small deterministic PRNG (mulberry32), so a failure can be replayed. */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** What each identity must receive: "OP id@version" (DELETE: "DELETE id"). */
type Expected = Record<Who, string[]>;

/** Runs `count` random writes on ids 1..8 plus two sentinels, computing the oracle as it goes. */
async function writeRandomly(seed: number, count: number): Promise<Expected> {
  const random = prng(seed);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)] as T;
  const expected: Expected = { ann: [], ben: [], cat: [], anon: [], service: [] };
  const versions = new Map<number, number>();
  const owners = [U.ann, U.ben, U.cat, null];
  const statuses = ['draft', 'published', 'private'];
  const record = async (op: string, id: number, version: number | undefined) => {
    for (const w of WHO) {
      if (op === 'DELETE') continue;
      if (await canSee(w, id)) expected[w].push(`${op} ${id}@${version}`);
    }
  };
  for (let step = 0; step < count; step++) {
    const id = 1 + Math.floor(random() * 8);
    const version = (versions.get(id) ?? 0) + 1;
    if (!versions.has(id)) {
      await admin.query(
        `insert into public.vv_items (id, version, tenant_id, owner_id, status, viewers, deleted_at, note)
         values ($1, $2, $3, $4, $5, $6, $7, $8)`,
        [
          id,
          version,
          pick([TENANT_A, TENANT_B]),
          pick(owners),
          pick(statuses),
          random() < 0.3 ? [pick([U.ann, U.ben, U.cat])] : [],
          random() < 0.2 ? new Date() : null,
          pick(['x', 'y']),
        ],
      );
      versions.set(id, version);
      await record('INSERT', id, version);
    } else if (random() < 0.15) {
      // Before a delete: who could see the version that is about to go.
      for (const w of WHO) if (await canSee(w, id)) expected[w].push(`DELETE ${id}`);
      await admin.query('delete from public.vv_items where id = $1', [id]);
      versions.delete(id);
    } else {
      const change = pick(['tenant', 'owner', 'status', 'share', 'unshare', 'trash', 'restore', 'note']);
      const set: Record<string, string> = {
        tenant: `tenant_id = case when tenant_id = '${TENANT_A}' then '${TENANT_B}'::uuid else '${TENANT_A}'::uuid end`,
        owner: `owner_id = ${(() => {
          const o = pick(owners);
          return o ? `'${o}'::uuid` : 'null';
        })()}`,
        status: `status = '${pick(statuses)}'`,
        share: `viewers = array_append(viewers, '${pick([U.ann, U.ben, U.cat])}'::uuid)`,
        unshare: `viewers = '{}'`,
        trash: 'deleted_at = now()',
        restore: 'deleted_at = null',
        note: `note = '${pick(['x', 'y'])}'`,
      };
      await admin.query(`update public.vv_items set ${set[change]}, version = $2 where id = $1`, [
        id,
        version,
      ]);
      versions.set(id, version);
      await record('UPDATE', id, version);
    }
  }
  // Sentinels everyone can see, written last: a stream that has them has been sent everything.
  await admin.query(
    `insert into public.vv_items (id, version, tenant_id, owner_id, status) values
       (1000, 1, '${TENANT_A}', null, 'published')`,
  );
  await record('INSERT', 1000, 1);
  await admin.query(
    `insert into public.vv_items (id, version, tenant_id, owner_id, status) values
       (1001, 1, '${TENANT_B}', null, 'published')`,
  );
  await record('INSERT', 1001, 1);
  return expected;
}

const OP: Record<number, string> = {
  [events.Operation.OPERATION_INSERT]: 'INSERT',
  [events.Operation.OPERATION_UPDATE]: 'UPDATE',
  [events.Operation.OPERATION_DELETE]: 'DELETE',
};

function received(s: OpenStream): string[] {
  return s.changes.map((e) => {
    const r = recordOf(e) ?? {};
    return e.operation === events.Operation.OPERATION_DELETE
      ? `DELETE ${r.id}`
      : `${OP[e.operation]} ${r.id}@${r.version}`;
  });
}

async function receivedAll(s: OpenStream, expected: string[], w: Who): Promise<string[]> {
  const last = expected[expected.length - 1] as string;
  await s.waitFor((x) => received(x).includes(last), 20_000, `${w}: ${last}`);
  await s.settle();
  return received(s);
}

describe('change streams send only the row versions the subscriber could read', () => {
  it('live and on catch-up, for every operation and every version (random writes, oracle: SELECT at commit)', async () => {
    const request: SubscribeReq = {
      tables: [{ table: 'vv_items' }],
      start: { $case: 'fromNow', value: true },
    };
    const live = {} as Record<Who, OpenStream>;
    for (const w of WHO) live[w] = await open(w, request);
    const start = live.service.heartbeats[0]?.position;
    expect(start).toBeTruthy();
    try {
      const expected = await writeRandomly(20261127, 160);
      // The oracle must exercise hiding as well as showing: versions someone could not read.
      for (const w of ['ann', 'ben', 'cat', 'anon'] as const) {
        expect(expected[w].length).toBeGreaterThan(2);
        expect(expected[w].length).toBeLessThan(expected.service.length);
      }
      for (const w of WHO)
        expect(await receivedAll(live[w], expected[w], w), `live ${w}`).toEqual(expected[w]);

      // Catch-up from before the writes: the rows now look different from the logged versions.
      const again = {} as Record<Who, OpenStream>;
      for (const w of WHO)
        again[w] = await open(w, {
          tables: [{ table: 'vv_items' }],
          start: { $case: 'fromPosition', value: start as string },
        });
      try {
        for (const w of WHO)
          expect(await receivedAll(again[w], expected[w], w), `catch-up ${w}`).toEqual(expected[w]);
      } finally {
        await Promise.all(Object.values(again).map((s) => s.cancel()));
      }
    } finally {
      await Promise.all(Object.values(live).map((s) => s.cancel()));
    }
  });

  it('a filter never reveals rows the subscriber cannot see (DELETE included)', async () => {
    await admin.query('delete from public.vv_items');
    await admin.query(
      `insert into public.vv_items (id, version, tenant_id, owner_id, status, note) values
         (2001, 1, '${TENANT_A}', null, 'published', 'secret'),
         (2002, 1, '${TENANT_B}', null, 'published', 'secret')`,
    );
    const ben = await open('ben', {
      tables: [{ table: 'vv_items', filter: eq('note', V.str('secret')) }],
      start: { $case: 'fromNow', value: true },
    });
    try {
      // Tenant A's row matches ben's filter but ben cannot read it: nothing, not even its DELETE.
      await admin.query(`update public.vv_items set version = 2 where id = 2001`);
      await admin.query('delete from public.vv_items where id = 2001');
      await admin.query('delete from public.vv_items where id = 2002'); // his own tenant's: sent
      await ben.waitFor((s) => received(s).includes('DELETE 2002'), 10_000, 'DELETE 2002');
      await ben.settle();
      expect(received(ben)).toEqual(['DELETE 2002']);
    } finally {
      await ben.cancel();
    }
  });

  it('a policy changed while streams run is applied to the next change', async () => {
    await admin.query('delete from public.vv_items');
    const ann = await open('ann', {
      tables: [{ table: 'vv_items' }],
      start: { $case: 'fromNow', value: true },
    });
    try {
      await admin.query(
        `insert into public.vv_items (id, version, tenant_id, owner_id, status) values (3001, 1, '${TENANT_A}', null, 'published')`,
      );
      await ann.waitFor((s) => received(s).includes('INSERT 3001@1'), 10_000, 'INSERT 3001@1');
      // Membership no longer grants reads: only the owner's rows are visible from now on.
      await admin.query('drop policy vv_member on public.vv_items');
      await admin.query(
        `insert into public.vv_items (id, version, tenant_id, owner_id, status) values
           (3002, 1, '${TENANT_A}', null, 'published')`,
      );
      await admin.query(
        `insert into public.vv_items (id, version, tenant_id, owner_id, status) values
           (3003, 1, '${TENANT_A}', '${U.ann}', 'draft')`,
      );
      await ann.waitFor((s) => received(s).includes('INSERT 3003@1'), 10_000, 'INSERT 3003@1');
      await ann.settle();
      expect(received(ann)).toEqual(['INSERT 3001@1', 'INSERT 3003@1']);
      expect(ann.error).toBeUndefined();
    } finally {
      await ann.cancel();
      await admin.query(
        `create policy vv_member on public.vv_items for select to authenticated
           using (tenant_id = (select auth.tenant_id()) and status <> 'draft')`,
      );
    }
  });
});
