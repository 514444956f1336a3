import { setTimeout as delay } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { data } from '@sluice/proto';
import { ClientError, Metadata, Status } from 'nice-grpc';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectRejection } from './expect-rejection';
import { startStack, type TestStack } from './helpers';
import { V } from './wire-values';

// A call that runs pg_sleep must stop using the database as soon as the client goes away or its
// deadline passes. `public.slow` is created here (no sleeping function is exposed otherwise),
// which also exercises the live catalog reload after DDL.

let stack: TestStack;
let admin: pg.Client;
let timeoutStack: TestStack;
let timeoutAdmin: pg.Client;
let serverClosed = false;

const slowCall = (seconds: number): data.CallRequest => ({
  schema: '',
  function: 'slow',
  args: [{ name: 'seconds', value: V.double(seconds) }],
});

/** Creates public.slow in the stack's database and waits until the service's catalog has it. */
async function addSlowFunction(s: TestStack, client: pg.Client): Promise<void> {
  await client.query(`
    create function public.slow(seconds float8) returns void language sql volatile
      as $$ select pg_sleep(seconds) $$;
    revoke execute on function public.slow(float8) from public;
    grant execute on function public.slow(float8) to authenticated;
  `);
  const alice = s.client(await s.token('alice'));
  const started = Date.now();
  for (;;) {
    const schema = await alice.describeSchema({});
    const slow = schema.functions.find((f) => f.name === 'slow');
    if (slow) {
      expect(slow).toMatchObject({
        schema: 'public',
        // Type names are spelled like column types (pg_type names).
        args: [{ name: 'seconds', type: 'float8', hasDefault: false }],
        returnType: 'void',
        volatility: 'volatile',
      });
      return;
    }
    if (Date.now() - started > 5000) throw new Error('the catalog did not reload after DDL');
    await delay(25);
  }
}

/** Backends of `client`'s database currently running public.slow. */
async function runningSlow(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ n: number }>(
    `select count(*)::int as n from pg_stat_activity
     where datname = current_database() and state = 'active' and query like '%"slow"(%'
       and pid <> pg_backend_pid()`,
  );
  return rows[0]?.n ?? 0;
}

async function waitFor(condition: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const started = performance.now();
  for (;;) {
    if (await condition()) return performance.now() - started;
    if (performance.now() - started > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms`);
    await delay(10);
  }
}

/** A unary Call through grpc-js directly: nice-grpc's client has no deadline option, grpc-js sends grpc-timeout. */
function callWithDeadline(s: TestStack, token: string, req: data.CallRequest, deadline: Date) {
  const client = new grpc.Client(`127.0.0.1:${s.server.port}`, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  return new Promise<data.CallResponse>((resolve, reject) => {
    client.makeUnaryRequest(
      `/${data.DataServiceDefinition.fullName}/${data.DataServiceDefinition.methods.call.name}`,
      (r: data.CallRequest) => Buffer.from(data.CallRequest.encode(r).finish()),
      (b: Buffer) => data.CallResponse.decode(b),
      req,
      metadata,
      { deadline },
      (error, response) => (error ? reject(error) : resolve(response as data.CallResponse)),
    );
  }).finally(() => client.close());
}

beforeAll(async () => {
  [stack, timeoutStack] = await Promise.all([startStack(), startStack({ STATEMENT_TIMEOUT_MS: '200' })]);
  admin = new pg.Client({ connectionString: stack.db.url });
  timeoutAdmin = new pg.Client({ connectionString: timeoutStack.db.url });
  await Promise.all([admin.connect(), timeoutAdmin.connect()]);
  await Promise.all([addSlowFunction(stack, admin), addSlowFunction(timeoutStack, timeoutAdmin)]);
});

afterAll(async () => {
  await admin?.end();
  await timeoutAdmin?.end();
  await timeoutStack?.close();
  if (stack) {
    stack.channel.close();
    if (!serverClosed) await stack.server.close();
    await stack.db.drop();
  }
});

describe('cancellation', () => {
  it('a cancelled call stops its statement within a second', async () => {
    const alice = stack.client(await stack.token('alice'));
    const controller = new AbortController();
    const call = alice.call(slowCall(30), { signal: controller.signal });
    call.catch(() => {});
    await waitFor(async () => (await runningSlow(admin)) === 1, 5000);

    controller.abort();
    const error = await call.then(
      () => undefined,
      (e: unknown) => e,
    );
    // nice-grpc ends a call the client aborted with an AbortError; the server sees CANCELLED.
    expect((error as Error).name).toBe('AbortError');
    const gone = await waitFor(async () => (await runningSlow(admin)) === 0, 1000);
    expect(gone).toBeLessThan(1000);

    // The connection went back to the pool in a usable state.
    await expect(alice.call(slowCall(0))).resolves.toEqual({ result: { columns: [], rows: [] } });
  });

  it('a passed deadline ends the call with DEADLINE_EXCEEDED and stops its statement', async () => {
    const token = await stack.token('alice');
    const started = Date.now();
    const error = await callWithDeadline(stack, token, slowCall(30), new Date(Date.now() + 400)).then(
      () => undefined,
      (e: grpc.ServiceError) => e,
    );
    expect(error?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(Date.now() - started).toBeLessThan(2000);
    const gone = await waitFor(async () => (await runningSlow(admin)) === 0, 1000);
    expect(gone).toBeLessThan(1000);
  });

  it('a deadline the call meets is harmless', async () => {
    const token = await stack.token('alice');
    const res = await callWithDeadline(stack, token, slowCall(0.05), new Date(Date.now() + 5000));
    expect(res.result?.rows).toEqual([]);
  });

  it('a statement running past STATEMENT_TIMEOUT_MS is DEADLINE_EXCEEDED', async () => {
    const alice = timeoutStack.client(await timeoutStack.token('alice'));
    const started = Date.now();
    await expectRejection(alice.call(slowCall(5)), {
      code: Status.DEADLINE_EXCEEDED,
      reason: 'SLUICE_STATEMENT_TIMEOUT',
    });
    expect(Date.now() - started).toBeLessThan(1500);
    expect(await runningSlow(timeoutAdmin)).toBe(0);
    // Below the limit it runs.
    await expect(alice.call(slowCall(0.05))).resolves.toBeDefined();
  });
});

describe('graceful shutdown', () => {
  it('lets a running call finish, then refuses new calls with UNAVAILABLE', async () => {
    const alice = stack.client(await stack.token('alice'));
    const inFlight = alice.call(slowCall(0.5));
    await waitFor(async () => (await runningSlow(admin)) === 1, 5000);

    const closing = stack.server.close();
    serverClosed = true;
    await expect(inFlight).resolves.toEqual({ result: { columns: [], rows: [] } });
    await closing;

    const error = await alice.select({ table: 'posts', limit: 1 }, { metadata: Metadata() }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ClientError);
    expect((error as ClientError).code).toBe(Status.UNAVAILABLE);
  });
});
