import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { comparePositions } from '@sluice/changes';
import type pg from 'pg';
import { changePositionNow, parseChangePosition } from '../src/change-position';
import type { StoredTableSelection } from '../src/stored-settings';

// Helpers of the fan-out tests (fanout-*.test.ts).

export interface EndpointSpec {
  readonly tenantId?: string | null;
  readonly ownerRole: 'anon' | 'authenticated' | 'service_role';
  readonly ownerClaims?: Record<string, unknown>;
  readonly tables: readonly StoredTableSelection[];
  readonly ordering?: 'none' | 'key' | 'tenant';
  /** Default: the log's end now. */
  readonly startPosition?: string;
  readonly enabled?: boolean;
}

/** Inserts an endpoint row as the admin API would (superuser pool); returns its id. */
export async function createEndpoint(pool: pg.Pool, url: string, spec: EndpointSpec): Promise<string> {
  const start = spec.startPosition ?? (await changePositionNow(pool));
  const { rows } = await pool.query<{ id: string }>(
    `insert into sluice_webhooks.endpoints
       (tenant_id, url, tables, ordering, owner_role, owner_claims, start_position, enabled)
     values ($1, $2, $3, $4, $5, $6, $7, $8) returning id`,
    [
      spec.tenantId ?? null,
      url,
      JSON.stringify(spec.tables),
      spec.ordering ?? 'none',
      spec.ownerRole,
      JSON.stringify(spec.ownerClaims ?? { role: spec.ownerRole }),
      start,
      spec.enabled ?? true,
    ],
  );
  return (rows[0] as { id: string }).id;
}

export interface StoredMessage {
  readonly id: string;
  readonly tenantId: string | null;
  readonly eventType: string;
  /** messages.payload::text (jsonb's text form: exact numbers). */
  readonly payloadText: string;
  readonly payload: RowPayload;
  readonly changePosition: string;
  readonly orderingKey: string | null;
  readonly traceparent: string | null;
  /** Its deliveries (endpoint id, fifo key), in id order. */
  readonly deliveries: readonly { endpointId: string; fifoKey: string | null; tenantId: string | null }[];
  /** The id of its first delivery (ids follow the order deliveries were queued in). */
  readonly deliveryId: number;
}

export interface RowPayload {
  readonly type: 'INSERT' | 'UPDATE' | 'DELETE';
  readonly schema: string;
  readonly table: string;
  readonly record: Record<string, unknown> | null;
  readonly old_record: Record<string, unknown> | null;
  readonly position: string;
  readonly commit_timestamp: string;
}

/** The endpoint's row-change messages in change-position order. */
export async function messagesOf(pool: pg.Pool, endpointId: string): Promise<StoredMessage[]> {
  const { rows } = await pool.query<{
    id: string;
    tenant_id: string | null;
    event_type: string;
    payload: string;
    change_position: string;
    ordering_key: string | null;
    traceparent: string | null;
    delivery_id: number;
    deliveries: { endpoint_id: string; fifo_key: string | null; tenant_id: string | null }[];
  }>(
    `select m.id, m.tenant_id, m.event_type, m.payload::text as payload, m.change_position, m.ordering_key,
            m.traceparent,
            (select min(d.id) from sluice_webhooks.deliveries d where d.message_id = m.id)::int as delivery_id,
            coalesce((select json_agg(json_build_object('endpoint_id', d.endpoint_id, 'fifo_key', d.fifo_key,
                                                       'tenant_id', d.tenant_id) order by d.id)
                        from sluice_webhooks.deliveries d where d.message_id = m.id), '[]') as deliveries
       from sluice_webhooks.messages m
      where m.endpoint_id = $1
      order by split_part(m.change_position, ':', 1)::bigint, split_part(m.change_position, ':', 2)::bigint`,
    [endpointId],
  );
  return rows.map((r) => ({
    id: r.id,
    tenantId: r.tenant_id,
    eventType: r.event_type,
    payloadText: r.payload,
    payload: JSON.parse(r.payload) as RowPayload,
    changePosition: r.change_position,
    orderingKey: r.ordering_key,
    traceparent: r.traceparent,
    deliveryId: r.delivery_id,
    deliveries: r.deliveries.map((d) => ({
      endpointId: d.endpoint_id,
      fifoKey: d.fifo_key,
      tenantId: d.tenant_id,
    })),
  }));
}

/**
 * Waits until the fan-out has handled every change committed before this call: its position
 * reaches the end of a change window appended now.
 */
export async function fannedOut(pool: pg.Pool, timeoutMs = 30_000): Promise<void> {
  const target = parseChangePosition(await changePositionNow(pool));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await pool.query<{ position: string }>('select position from sluice_webhooks.fanout');
    const at = rows[0]?.position;
    if (at && comparePositions(parseChangePosition(at), target) >= 0) return;
    if (Date.now() > deadline)
      throw new Error(
        `the fan-out did not reach ${target.window}:${target.id} in ${timeoutMs} ms (at ${at})`,
      );
    await delay(25);
  }
}

/** Polls `check` until it returns a value other than undefined. */
export async function waitUntil<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(25);
  }
}

export interface ReceivedRequest {
  readonly headers: Record<string, string>;
  readonly body: string;
}

/** A loopback receiver answering 204 to everything (endpoints' URLs point at it), keeping what it got. */
export async function startReceiver(): Promise<{
  url: string;
  requests: ReceivedRequest[];
  close(): Promise<void>;
}> {
  const requests: ReceivedRequest[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
      requests.push({ headers, body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A small deterministic PRNG (mulberry32), so a failing run can be replayed. */
export function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
