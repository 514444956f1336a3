import { setTimeout as delay } from 'node:timers/promises';
import { metrics } from '@sluice/observability';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { changePositionNow } from '../src/change-position';
import { createEndpoint, fannedOut, messagesOf, startReceiver } from './fanout-support';
import {
  ACME,
  type DataClient,
  startWebhooksStack,
  type WebhooksInstance,
  type WebhooksStack,
} from './helpers';

// The fan-out's durability: its position is stored with the messages it wrote (one
// transaction), so a stop, a restart, a failed transaction or a second instance neither loses
// nor repeats a change; endpoints start after their start_position.

let stack: WebhooksStack;
let receiver: Awaited<ReturnType<typeof startReceiver>>;
let dave: DataClient;
const extra: WebhooksInstance[] = [];

beforeAll(async () => {
  stack = await startWebhooksStack();
  receiver = await startReceiver();
  dave = stack.dataClient(await stack.token('dave'));
});

afterAll(async () => {
  for (const i of extra) await i.close();
  await stack?.close();
  await receiver?.close();
});

/** Inserts `n` ACME posts as dave through the data service, `parallel` at a time; returns their ids. */
async function writePosts(n: number, title: string, parallel = 1): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i += parallel) {
    const batch = Array.from({ length: Math.min(parallel, n - i) }, (_, j) =>
      dave.insert({
        table: 'posts',
        columns: ['tenant_id', 'title'],
        rows: [
          {
            values: [
              { kind: { $case: 'stringValue', value: ACME } },
              { kind: { $case: 'stringValue', value: `${title} ${i + j}` } },
            ],
          },
        ],
        returning: ['id'],
      }),
    );
    for (const r of await Promise.all(batch)) {
      const v = r.result?.rows[0]?.values[0]?.kind;
      ids.push(String(v?.$case === 'intValue' ? v.value : v?.value));
    }
  }
  return ids;
}

const postsEndpoint = (start?: string) =>
  createEndpoint(stack.pool, receiver.url, {
    ownerRole: 'service_role',
    tables: [{ schema: 'public', table: 'posts', operations: ['INSERT'] }],
    ...(start ? { startPosition: start } : {}),
  });

/** The post ids an endpoint received, in position order; every message with exactly one delivery. */
async function receivedIds(endpointId: string): Promise<string[]> {
  const messages = await messagesOf(stack.pool, endpointId);
  for (const m of messages) expect(m.deliveries).toHaveLength(1);
  return messages.map((m) => String(m.payload.record?.id));
}

async function counter(name: string): Promise<number> {
  const metric = await metrics.getSingleMetric(name)?.get();
  return metric?.values.reduce((n, v) => n + v.value, 0) ?? 0;
}

describe('the fan-out position', () => {
  it('survives a restart: changes written while no instance runs are fanned out after it, each once; start_position is honoured', async () => {
    const always = await postsEndpoint();
    const before = await writePosts(3, 'before');
    await fannedOut(stack.pool);
    await stack.server.close();

    const whileDown = await writePosts(4, 'down');
    const middle = await changePositionNow(stack.pool);
    const afterMiddle = await writePosts(3, 'after middle');
    // Created while nothing runs: one from the middle of the backlog, one from before it.
    const fromMiddle = await postsEndpoint(middle);
    const fromStart = await postsEndpoint('0:0');

    extra.push(await stack.addInstance());
    await fannedOut(stack.pool);
    expect(await receivedIds(always)).toEqual([...before, ...whileDown, ...afterMiddle]);
    expect(await receivedIds(fromMiddle)).toEqual(afterMiddle);
    // Everything after the fan-out's own position (it never reads before it).
    expect(await receivedIds(fromStart)).toEqual([...whileDown, ...afterMiddle]);
  });

  it('catches up on a backlog of many small transactions at once, not a few change windows per poll', async () => {
    await stack.pool.query('update sluice_webhooks.endpoints set enabled = false');
    const id = await postsEndpoint();
    await stack.server.close();
    for (const running of extra.splice(0)) await running.close();
    // One change window per transaction (the events service's feed would append them so).
    const backlog: string[] = [];
    for (let i = 0; i < 200; i++) {
      backlog.push(...(await writePosts(1, `backlog ${i}`)));
      await changePositionNow(stack.pool);
    }
    const started = Date.now();
    extra.push(await stack.addInstance());
    await fannedOut(stack.pool, 60_000);
    const took = Date.now() - started;
    expect(new Set(await receivedIds(id))).toEqual(new Set(backlog));
    // A read takes at most 16 windows: at one read per poll (1 s) this took 13 s.
    expect(took).toBeLessThan(8_000);
  });

  it('a failed transaction writes nothing and moves nothing: the batch is retried and fanned out once', async () => {
    await stack.pool.query('update sluice_webhooks.endpoints set enabled = false');
    const id = await postsEndpoint();
    const created = await counter('webhooks_fanout_messages_total');
    // Fail the fan-out's insert into messages (the last statements of its transaction) until told not to.
    await stack.pool.query(`
      create table public.fo_fail (fail boolean not null);
      insert into public.fo_fail values (true);
      create function public.fo_fail_insert() returns trigger language plpgsql security definer as $$
      begin
        if (select fail from public.fo_fail) then raise exception 'fo_fail: injected failure'; end if;
        return null;
      end $$;
      create trigger fo_fail after insert on sluice_webhooks.deliveries
        for each statement execute function public.fo_fail_insert();`);
    try {
      const { rows: at } = await stack.pool.query<{ position: string }>(
        'select position from sluice_webhooks.fanout',
      );
      const ids = await writePosts(5, 'failing');
      await delay(1500);
      const { rows: still } = await stack.pool.query<{ position: string }>(
        'select position from sluice_webhooks.fanout',
      );
      expect(still[0]?.position).toBe(at[0]?.position);
      expect(await receivedIds(id)).toEqual([]);
      await stack.pool.query('update public.fo_fail set fail = false');
      await fannedOut(stack.pool);
      expect(await receivedIds(id)).toEqual(ids);
      expect((await counter('webhooks_fanout_messages_total')) - created).toBe(5);
    } finally {
      await stack.pool.query(
        'drop trigger if exists fo_fail on sluice_webhooks.deliveries; drop function if exists public.fo_fail_insert(); drop table if exists public.fo_fail',
      );
    }
  });

  it('two instances fan out each change once; while one holds the position the other waits', async () => {
    extra.push(await stack.addInstance());
    const id = await postsEndpoint();
    // A transaction holding the position row stands for an instance at work: nobody moves.
    const holder = new pg.Client({ connectionString: stack.db.url });
    await holder.connect();
    try {
      await holder.query('begin');
      const { rows } = await holder.query<{ position: string }>(
        'select position from sluice_webhooks.fanout for update',
      );
      const held = await writePosts(3, 'held');
      await delay(1500);
      expect(await receivedIds(id)).toEqual([]);
      const { rows: now } = await stack.pool.query<{ position: string }>(
        'select position from sluice_webhooks.fanout',
      );
      expect(now[0]?.position).toBe(rows[0]?.position);
      await holder.query('rollback');
      // Many concurrent writers while both instances run.
      const more = await writePosts(60, 'concurrent', 6);
      await fannedOut(stack.pool);
      const got = await receivedIds(id);
      expect(got).toHaveLength(held.length + more.length);
      expect(new Set(got)).toEqual(new Set([...held, ...more]));
    } finally {
      await holder.end();
    }
  });

  it('reports its lag (0 when caught up)', async () => {
    await writePosts(1, 'lag');
    await fannedOut(stack.pool);
    for (let i = 0; i < 100 && (await counter('webhooks_fanout_lag_seconds')) > 0; i++) await delay(20);
    expect(await counter('webhooks_fanout_lag_seconds')).toBe(0);
  });
});

describe('a new endpoint', () => {
  it('gets every change after its start when it takes sluice_webhooks.endpoint_start_position() in its creating transaction', async () => {
    await stack.pool.query('update sluice_webhooks.endpoints set enabled = false');
    if (extra.length === 0) extra.push(await stack.addInstance());
    const creator = new pg.Client({ connectionString: stack.db.url });
    await creator.connect();
    const insertEndpoint = (start: string) =>
      creator.query<{ id: string }>(
        `insert into sluice_webhooks.endpoints (url, tables, owner_role, start_position)
         values ($1, '[{"schema":"public","table":"posts","operations":["INSERT"]}]', 'service_role', $2) returning id`,
        [receiver.url, start],
      );
    try {
      // A position taken before the transaction (the log's end): the fan-out moves past a change
      // committed while the endpoint is not yet visible, and it never reaches the endpoint.
      await creator.query('begin');
      const early = (await insertEndpoint(await changePositionNow(stack.pool))).rows[0]?.id as string;
      const missed = await writePosts(1, 'while the early endpoint commits');
      await fannedOut(stack.pool);
      await creator.query('commit');
      await fannedOut(stack.pool);
      expect(await receivedIds(early)).toEqual([]);

      // The fan-out's own position, held until the endpoint commits: nothing falls in between.
      await creator.query('begin');
      const { rows } = await creator.query<{ start: string }>(
        'select sluice_webhooks.endpoint_start_position() as start',
      );
      const held = (await insertEndpoint(rows[0]?.start as string)).rows[0]?.id as string;
      const kept = await writePosts(1, 'while the held endpoint commits');
      await delay(1500); // the fan-out would have passed it by now
      await creator.query('commit');
      await fannedOut(stack.pool);
      expect(await receivedIds(held)).toEqual(kept);
      expect(missed).toHaveLength(1);
    } finally {
      await creator.end();
    }
  });
});
