import { Filter, Operator } from '@sluice/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEndpoint, fannedOut, messagesOf, startReceiver } from './fanout-support';
import { ACME, startWebhooksStack, USERS, type WebhooksStack } from './helpers';

// Review: what an RLS owner's row-change messages may tell it when its privileges change under
// the endpoint, and through its filter.

let stack: WebhooksStack;
let receiver: Awaited<ReturnType<typeof startReceiver>>;
const ALICE = { sub: USERS.alice, role: 'authenticated', tenant_id: ACME };

beforeAll(async () => {
  stack = await startWebhooksStack();
  receiver = await startReceiver();
  await stack.pool.query(`
    create table public.rv_priv (id bigint primary key, tenant_id uuid, shown text, secret text);
    alter table public.rv_priv enable row level security;
    create policy rv_priv_read on public.rv_priv for select to authenticated using (true);
    grant select (id, tenant_id, shown) on public.rv_priv to authenticated;
    select sluice.enable_changes('public.rv_priv');
  `);
});

afterAll(async () => {
  await stack?.close();
  await receiver?.close();
});

const equals = (column: string, value: string) =>
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

describe('review: owner privileges', () => {
  it('a filter on a column the owner may not read tells nothing: the selection is left out', async () => {
    const probe = await createEndpoint(stack.pool, receiver.url, {
      tenantId: ACME,
      ownerRole: 'authenticated',
      ownerClaims: ALICE,
      tables: [{ schema: 'public', table: 'rv_priv', operations: [], filter: equals('secret', 'guess') }],
    });
    await stack.pool.query(`insert into public.rv_priv values (1, $1, 'a', 'guess'), (2, $1, 'b', 'other')`, [
      ACME,
    ]);
    await fannedOut(stack.pool);
    expect(await messagesOf(stack.pool, probe)).toEqual([]);
  });

  it('a column privilege revoked is left out of the very next change, not only after the catalog reloads', async () => {
    const alice = await createEndpoint(stack.pool, receiver.url, {
      tenantId: ACME,
      ownerRole: 'authenticated',
      ownerClaims: ALICE,
      tables: [{ schema: 'public', table: 'rv_priv', operations: ['INSERT'] }],
    });
    await stack.pool.query(`insert into public.rv_priv values (10, $1, 'before', 'x')`, [ACME]);
    await fannedOut(stack.pool);
    // Revoked, then written at once: the fan-out may read the change before its catalog reloads.
    await stack.pool.query('revoke select (shown) on public.rv_priv from authenticated');
    await stack.pool.query(`insert into public.rv_priv values (11, $1, 'after revoke', 'x')`, [ACME]);
    await fannedOut(stack.pool);
    const messages = await messagesOf(stack.pool, alice);
    expect(messages.map((m) => m.payload.record)).toEqual([
      { id: 10, tenant_id: ACME, shown: 'before' },
      { id: 11, tenant_id: ACME },
    ]);
  });
});
