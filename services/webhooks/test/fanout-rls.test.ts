import { Filter, Operator, type Value } from '@sluice/proto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createEndpoint,
  fannedOut,
  messagesOf,
  prng,
  type RowPayload,
  startReceiver,
} from './fanout-support';
import { ACME, type DataClient, GLOBEX, startWebhooksStack, USERS, type WebhooksStack } from './helpers';

// The oracle for row-change webhooks under RLS: an endpoint receives a row version if and only
// if its owner could SELECT that version right after it was committed (for a DELETE: the row's
// last version just before it), with its selection's filter and operations applied as a Select
// would. Writes run one at a time; after each, every owner's view of the row is read with a
// plain SELECT under its role and claims. In particular a tenant's endpoint never receives a row
// of another tenant.

const TENANT_A = 'aaaa0000-0000-0000-0000-00000000000a';
const TENANT_B = 'bbbb0000-0000-0000-0000-00000000000b';
const U = {
  ann: '0a000000-0000-0000-0000-0000000000a1',
  ben: '0b000000-0000-0000-0000-0000000000b1',
  cat: '0c000000-0000-0000-0000-0000000000c1',
};

interface Owner {
  readonly role: 'anon' | 'authenticated' | 'service_role';
  readonly claims: Record<string, unknown>;
  readonly tenant: string | null;
}

const SCHEMA = `
  create table public.fo_items (
    id bigint primary key,
    version integer not null,
    tenant_id uuid not null,
    owner_id uuid,
    status text not null,
    viewers uuid[] not null default '{}',
    deleted_at timestamptz,
    note text
  );
  alter table public.fo_items enable row level security;
  create policy fo_member on public.fo_items for select to authenticated
    using (tenant_id = (select auth.tenant_id()) and status <> 'draft');
  create policy fo_owner on public.fo_items for select to authenticated
    using (owner_id = (select auth.uid()));
  create policy fo_shared on public.fo_items for select to authenticated
    using ((select auth.uid()) = any (viewers));
  create policy fo_public on public.fo_items for select to anon
    using (status = 'published');
  create policy fo_live on public.fo_items as restrictive for select
    using (deleted_at is null or owner_id = (select auth.uid()));
  grant select on public.fo_items to anon, authenticated;
  grant all on public.fo_items to service_role;
  select sluice.enable_changes('public.fo_items');
`;

let stack: WebhooksStack;
let admin: pg.Client;
let receiver: Awaited<ReturnType<typeof startReceiver>>;

beforeAll(async () => {
  stack = await startWebhooksStack();
  receiver = await startReceiver();
  admin = new pg.Client({ connectionString: stack.db.url });
  await admin.connect();
  await admin.query(SCHEMA);
});

afterAll(async () => {
  await admin?.end();
  await stack?.close();
  await receiver?.close();
});

/** Whether `owner` can SELECT row `id` of `table` now (and it satisfies `where`), with a plain query under its role and claims. */
async function canSee(owner: Owner, table: string, id: string, where = 'true'): Promise<boolean> {
  await admin.query('begin read only');
  try {
    await admin.query(`select set_config('role', $1, true), set_config('request.jwt.claims', $2, true)`, [
      owner.role,
      JSON.stringify(owner.claims),
    ]);
    const r = await admin.query(`select 1 from ${table} where id = $1 and (${where})`, [id]);
    return r.rows.length === 1;
  } finally {
    await admin.query('rollback');
  }
}

const eqText = (column: string, value: string) =>
  Filter.toJSON({
    kind: {
      $case: 'condition',
      value: {
        column,
        op: Operator.OPERATOR_EQ,
        value: { kind: { $case: 'stringValue', value } },
        values: [],
        textSearchConfig: '',
      },
    },
  });

/** An endpoint under test: its owner, selection, and the oracle's expectation. */
interface Case {
  readonly name: string;
  readonly owner: Owner;
  readonly operations: readonly ('INSERT' | 'UPDATE' | 'DELETE')[];
  /** The selection's filter as SQL for the oracle, and as stored. */
  readonly where?: string;
  readonly filter?: unknown;
  id?: string;
  expected: string[];
}

function cases(table: string, owners: Record<string, Owner>, filtered: Record<string, Owner>): Case[] {
  const out: Case[] = Object.entries(owners).map(([name, owner]) => ({
    name,
    owner,
    operations: [],
    expected: [],
  }));
  for (const [name, owner] of Object.entries(filtered)) {
    out.push({
      name: `${name} (published, INSERT+DELETE)`,
      owner,
      operations: ['INSERT', 'DELETE'],
      where: `status = 'published'`,
      filter: eqText('status', 'published'),
      expected: [],
    });
  }
  void table;
  return out;
}

async function createEndpoints(table: string, list: Case[]): Promise<void> {
  for (const c of list) {
    c.id = await createEndpoint(stack.pool, receiver.url, {
      tenantId: c.owner.tenant,
      ownerRole: c.owner.role,
      ownerClaims: c.owner.claims,
      tables: [
        { schema: 'public', table, operations: [...c.operations], ...(c.filter ? { filter: c.filter } : {}) },
      ],
    });
  }
}

/** After a write of `op` to row `id`: what each endpoint must receive ("OP id@version"; DELETE: recorded before it). */
async function record(table: string, list: Case[], op: 'INSERT' | 'UPDATE', id: string, version: number) {
  for (const c of list) {
    if (c.operations.length > 0 && !c.operations.includes(op)) continue;
    if (await canSee(c.owner, table, id, c.where)) c.expected.push(`${op} ${id}@${version}`);
  }
}

async function recordDelete(table: string, list: Case[], id: string) {
  for (const c of list) {
    if (c.operations.length > 0 && !c.operations.includes('DELETE')) continue;
    if (await canSee(c.owner, table, id, c.where)) c.expected.push(`DELETE ${id}`);
  }
}

function received(payloads: RowPayload[]): string[] {
  return payloads.map((p) =>
    p.type === 'DELETE'
      ? `DELETE ${String(p.old_record?.id)}`
      : `${p.type} ${String(p.record?.id)}@${String(p.record?.version ?? p.record?.view_count)}`,
  );
}

async function check(list: Case[]): Promise<void> {
  await fannedOut(stack.pool);
  for (const c of list) {
    const messages = await messagesOf(stack.pool, c.id as string);
    expect(received(messages.map((m) => m.payload)), c.name).toEqual(c.expected);
    // Deliveries are queued in change order (what FIFO per key relies on).
    const ids = messages.map((m) => m.deliveryId);
    expect(ids, `${c.name}: delivery order`).toEqual([...ids].sort((a, b) => a - b));
    for (const m of messages) {
      expect(m.deliveries.length, `${c.name}: one delivery per message`).toBe(1);
      expect(m.tenantId).toBe(c.owner.tenant);
    }
  }
}

describe('a row-change endpoint receives exactly the versions its owner could SELECT', () => {
  it('random writes over two tenants, tenant moves, owners, shares and soft deletes (oracle: SELECT at commit)', async () => {
    const owners: Record<string, Owner> = {
      ann: {
        role: 'authenticated',
        claims: { sub: U.ann, role: 'authenticated', tenant_id: TENANT_A },
        tenant: TENANT_A,
      },
      ben: {
        role: 'authenticated',
        claims: { sub: U.ben, role: 'authenticated', tenant_id: TENANT_B },
        tenant: TENANT_B,
      },
      cat: {
        role: 'authenticated',
        claims: { sub: U.cat, role: 'authenticated', tenant_id: TENANT_A },
        tenant: TENANT_A,
      },
      anon: { role: 'anon', claims: { role: 'anon' }, tenant: null },
      service: { role: 'service_role', claims: { role: 'service_role' }, tenant: null },
    };
    const list = cases('fo_items', owners, { ann: owners.ann as Owner, ben: owners.ben as Owner });
    await createEndpoints('fo_items', list);

    const random = prng(20261127);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
    const versions = new Map<number, number>();
    const people = [U.ann, U.ben, U.cat, null];
    const statuses = ['draft', 'published', 'private'];
    for (let step = 0; step < 160; step++) {
      const id = 1 + Math.floor(random() * 8);
      const version = (versions.get(id) ?? 0) + 1;
      if (!versions.has(id)) {
        await admin.query(
          `insert into public.fo_items (id, version, tenant_id, owner_id, status, viewers, deleted_at, note)
           values ($1, $2, $3, $4, $5, $6, $7, $8)`,
          [
            id,
            version,
            pick([TENANT_A, TENANT_B]),
            pick(people),
            pick(statuses),
            random() < 0.3 ? [pick([U.ann, U.ben, U.cat])] : [],
            random() < 0.2 ? new Date() : null,
            pick(['x', 'y']),
          ],
        );
        versions.set(id, version);
        await record('public.fo_items', list, 'INSERT', String(id), version);
      } else if (random() < 0.15) {
        await recordDelete('public.fo_items', list, String(id));
        await admin.query('delete from public.fo_items where id = $1', [id]);
        versions.delete(id);
      } else {
        const owner = pick(people);
        const set = pick([
          `tenant_id = case when tenant_id = '${TENANT_A}' then '${TENANT_B}'::uuid else '${TENANT_A}'::uuid end`,
          owner ? `owner_id = '${owner}'::uuid` : 'owner_id = null',
          `status = '${pick(statuses)}'`,
          `viewers = array_append(viewers, '${pick([U.ann, U.ben, U.cat])}'::uuid)`,
          `viewers = '{}'`,
          'deleted_at = now()',
          'deleted_at = null',
          `note = '${pick(['x', 'y'])}'`,
        ]);
        await admin.query(`update public.fo_items set ${set}, version = $2 where id = $1`, [id, version]);
        versions.set(id, version);
        await record('public.fo_items', list, 'UPDATE', String(id), version);
      }
    }
    // The oracle must exercise hiding as well as showing.
    const all = (list.find((c) => c.name === 'service') as Case).expected.length;
    for (const c of list.filter((c) => c.owner.role !== 'service_role')) {
      expect(c.expected.length, c.name).toBeGreaterThan(2);
      expect(c.expected.length, c.name).toBeLessThan(all);
    }
    await check(list);
  });

  it('posts written through the data service by ACME and GLOBEX users reach each tenant only (reference schema)', async () => {
    const member = (sub: string, tenant: string): Owner => ({
      role: 'authenticated',
      claims: { sub, role: 'authenticated', tenant_id: tenant },
      tenant,
    });
    const owners: Record<string, Owner> = {
      alice: member(USERS.alice, ACME),
      carol: member(USERS.carol, ACME),
      bob: member(USERS.bob, GLOBEX),
      anon: { role: 'anon', claims: { role: 'anon' }, tenant: null },
      service: { role: 'service_role', claims: { role: 'service_role' }, tenant: null },
    };
    const list = cases('posts', owners, { carol: owners.carol as Owner, bob: owners.bob as Owner });
    await createEndpoints('posts', list);
    const writers: Record<string, DataClient> = {
      [ACME]: stack.dataClient(await stack.token('dave')),
      [GLOBEX]: stack.dataClient(await stack.token('bob')),
    };
    const str = (s: string): Value => ({ kind: { $case: 'stringValue', value: s } });
    const int = (n: number): Value => ({ kind: { $case: 'intValue', value: BigInt(n) } });
    const byId = (id: string) =>
      ({
        kind: {
          $case: 'condition',
          value: {
            column: 'id',
            op: Operator.OPERATOR_EQ,
            value: int(Number(id)),
            values: [],
            textSearchConfig: '',
          },
        },
      }) as Filter;
    const random = prng(4242);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
    // Row id -> [tenant, version]; the version is kept in view_count.
    const rows = new Map<string, [string, number]>();
    for (let step = 0; step < 40; step++) {
      const existing = [...rows.keys()];
      if (existing.length < 3 || random() < 0.3) {
        const tenant = pick([ACME, GLOBEX]);
        const result = await writers[tenant]?.insert({
          table: 'posts',
          columns: ['tenant_id', 'title', 'status', 'view_count'],
          rows: [{ values: [str(tenant), str(`post ${step}`), str(pick(['draft', 'published'])), int(1)] }],
          returning: ['id'],
        });
        const idValue = result?.result?.rows[0]?.values[0]?.kind;
        const id = String(idValue?.$case === 'intValue' ? idValue.value : idValue?.value);
        rows.set(id, [tenant, 1]);
        await record('public.posts', list, 'INSERT', id, 1);
      } else if (random() < 0.2) {
        const id = pick(existing);
        const [tenant] = rows.get(id) as [string, number];
        await recordDelete('public.posts', list, id);
        const deleted = await writers[tenant]?.delete({ table: 'posts', filter: byId(id) });
        expect(deleted?.affected, `delete ${id}`).toBe(1n);
        rows.delete(id);
      } else {
        const id = pick(existing);
        const [tenant, version] = rows.get(id) as [string, number];
        const set = pick([
          { column: 'status', value: str(pick(['draft', 'published', 'archived'])) },
          {
            column: 'deleted_at',
            value: {
              kind: {
                $case: 'timestampValue',
                value: { seconds: BigInt(Math.floor(Date.now() / 1000)), nanos: 0 },
              },
            } as Value,
          },
          { column: 'deleted_at', value: { kind: undefined } as Value },
          { column: 'title', value: str(`edited ${step}`) },
        ]);
        const updated = await writers[tenant]?.update({
          table: 'posts',
          set: [set, { column: 'view_count', value: int(version + 1) }],
          filter: byId(id),
        });
        expect(updated?.affected, `update ${id}`).toBe(1n);
        rows.set(id, [tenant, version + 1]);
        await record('public.posts', list, 'UPDATE', id, version + 1);
      }
    }
    for (const c of list) {
      // Every tenant endpoint got something, and only its tenant's rows.
      if (c.owner.tenant && c.operations.length === 0) expect(c.expected.length, c.name).toBeGreaterThan(0);
    }
    await check(list);
    for (const c of list.filter((c) => c.owner.tenant)) {
      for (const m of await messagesOf(stack.pool, c.id as string)) {
        const row = m.payload.record ?? m.payload.old_record;
        if (m.payload.type !== 'DELETE') expect(row?.tenant_id, c.name).toBe(c.owner.tenant);
      }
    }
  });
});
