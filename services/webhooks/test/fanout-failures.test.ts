import { setTimeout as delay } from 'node:timers/promises';
import { metrics } from '@sluice/observability';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createEndpoint, fannedOut, messagesOf, startReceiver, waitUntil } from './fanout-support';
import { ACME, startWebhooksStack, USERS, type WebhooksStack } from './helpers';

// An endpoint whose owner's RLS check fails by its own making (here: a policy calling a function
// the owner's role may not execute) holds the batch back — retried, nothing skipped while it may
// be passing — and after 30 s of failing its changes of the batch are given up, logged and
// counted, so it cannot stop every other endpoint for good; for a while afterwards its failures
// are skipped at once.

let stack: WebhooksStack;
let receiver: Awaited<ReturnType<typeof startReceiver>>;

beforeAll(async () => {
  stack = await startWebhooksStack();
  receiver = await startReceiver();
  await stack.pool.query(`
    create table public.fo_broken (id bigint primary key, note text);
    create function public.fo_gate() returns boolean language sql as 'select true';
    revoke execute on function public.fo_gate() from public;
    alter table public.fo_broken enable row level security;
    create policy fo_gated on public.fo_broken for select to authenticated using (public.fo_gate());
    grant select on public.fo_broken to authenticated;
    grant all on public.fo_broken to service_role;
    select sluice.enable_changes('public.fo_broken');
  `);
});

afterAll(async () => {
  await stack?.close();
  await receiver?.close();
});

async function gauge(name: string): Promise<number> {
  const metric = await metrics.getSingleMetric(name)?.get();
  return metric?.values.reduce((n, v) => n + v.value, 0) ?? 0;
}

const skippedTotal = () => gauge('webhooks_fanout_skipped_total');

it('a broken owner check holds the batch back, then only that endpoint and table lose the batch', {
  timeout: 120_000,
}, async () => {
  const alice = { sub: USERS.alice, role: 'authenticated', tenant_id: ACME };
  const service = await createEndpoint(stack.pool, receiver.url, {
    ownerRole: 'service_role',
    tables: [{ schema: 'public', table: 'fo_broken', operations: [] }],
  });
  const healthy = await createEndpoint(stack.pool, receiver.url, {
    tenantId: ACME,
    ownerRole: 'authenticated',
    ownerClaims: alice,
    tables: [{ schema: 'public', table: 'type_samples', operations: [] }],
  });
  const broken = await createEndpoint(stack.pool, receiver.url, {
    tenantId: ACME,
    ownerRole: 'authenticated',
    ownerClaims: alice,
    tables: [
      { schema: 'public', table: 'fo_broken', operations: [] },
      {
        schema: 'public',
        table: 'type_samples',
        operations: [],
        filter: { condition: { column: 'label', op: 'OPERATOR_EQ', value: { stringValue: 'after' } } },
      },
    ],
  });
  // Let the catalog learn the new table first (its own wait is the catalog case, not this one).
  await waitUntil('fo_broken in the catalog', async () => {
    await stack.pool.query('insert into public.type_samples (label) values ($1)', ['probe']);
    await fannedOut(stack.pool);
    const m = await messagesOf(stack.pool, healthy);
    return m.length > 0 ? true : undefined;
  });
  await delay(1500); // the catalog reload after the DDL has surely landed by now
  const skippedBefore = await skippedTotal();
  const { rows: at } = await stack.pool.query<{ position: string }>(
    'select position from sluice_webhooks.fanout',
  );
  const healthyBefore = (await messagesOf(stack.pool, healthy)).length;

  await stack.pool.query(`insert into public.fo_broken values (1, 'x')`);
  await stack.pool.query(`insert into public.type_samples (label) values ('after')`);

  // Retried, not skipped: nobody gets the batch meanwhile and the position stays.
  await delay(5_000);
  expect(await messagesOf(stack.pool, service)).toHaveLength(0);
  const { rows: still } = await stack.pool.query<{ position: string }>(
    'select position from sluice_webhooks.fanout',
  );
  expect(still[0]?.position).toBe(at[0]?.position);
  // The lag gauge shows the held-back change's age.
  expect(await gauge('webhooks_fanout_lag_seconds')).toBeGreaterThan(3);

  // Given up after 30 s for the broken endpoint only.
  await waitUntil(
    "the service endpoint's message",
    async () => ((await messagesOf(stack.pool, service)).length > 0 ? true : undefined),
    90_000,
  );
  await fannedOut(stack.pool, 60_000);
  expect((await messagesOf(stack.pool, service)).map((m) => m.payload.record?.id)).toEqual([1]);
  expect(await messagesOf(stack.pool, healthy)).toHaveLength(healthyBefore + 1);
  // Only the broken table's changes were given up: its other table's still went out.
  const brokenGot = await messagesOf(stack.pool, broken);
  expect(brokenGot.map((m) => [m.payload.table, m.payload.record?.label])).toEqual([
    ['type_samples', 'after'],
  ]);
  expect((await skippedTotal()) - skippedBefore).toBe(1);
  expect(await gauge('webhooks_fanout_lag_seconds')).toBe(0);

  // Quarantined: the next change of the table is not held back 30 s again.
  const started = Date.now();
  await stack.pool.query(`insert into public.fo_broken values (2, 'y')`);
  await waitUntil(
    'the second message',
    async () => ((await messagesOf(stack.pool, service)).length === 2 ? true : undefined),
    20_000,
  );
  expect(Date.now() - started).toBeLessThan(10_000);
  expect(await messagesOf(stack.pool, broken)).toHaveLength(1);
  expect((await skippedTotal()) - skippedBefore).toBe(2);
});
