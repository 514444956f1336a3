import { releaseClient } from '@sluice/db';
import type pg from 'pg';
import { OPERATIONAL_SOURCE, type OperationalEvent, storeOperationalEvent } from './operational';
import type { AttemptResult } from './sender';

/**
 * The delivery worker's SQL: claiming due deliveries under a lease, and settling an attempt.
 * Values come back as text (the service pool's raw text types; JSON is cast to text, so a pool
 * with type parsers works too) and are parsed here.
 */

/** A delivery claimed for one attempt, with what the request needs. */
export interface ClaimedDelivery {
  readonly id: string;
  readonly messageId: string;
  readonly endpointId: string;
  readonly tenantId: string | null;
  /** This attempt's number (attempts after the claim). */
  readonly attempt: number;
  /** Settling needs it: a worker whose lease ran out settles nothing. */
  readonly leaseToken: string;
  /**
   * The lease's end as claimed (next_attempt_at, µs since the epoch): settling needs it too.
   * ReplayMessage makes a delivery due now without touching the token (its role may not); an
   * attempt in flight must not then settle it, or the replay is lost.
   */
  readonly leaseUntil: string;
  readonly url: string;
  /** The endpoint's custom headers. */
  readonly headers: Readonly<Record<string, string>>;
  readonly sendTraceparent: boolean;
  /** It has a FIFO key: the next of its key waits for it. */
  readonly fifo: boolean;
  /** The endpoint's failing_since when claimed (ms since the epoch), if failing. */
  readonly failingSinceMs: number | undefined;
  /** Signing secrets valid now, newest first. */
  readonly secrets: readonly string[];
  /** The request body, {"type","timestamp","data"}, built in SQL from payload::text (exact digits). */
  readonly body: string;
  readonly traceparent: string | null;
  /** The message's created_at, ms since the epoch (delivery lag). */
  readonly messageCreatedMs: number;
  /** The payload's size as text (messages.payload_bytes): what it counts against MAX_CLAIM_BYTES. */
  readonly payloadBytes: number;
}

/**
 * Payload bytes one claim reads at most (always one delivery at least): a backlog of large
 * messages — row changes have no size limit, published ones up to 1 MiB — would otherwise come
 * back in one result of up to CLAIM_BATCH (256) bodies, GBs in memory at once (and again after
 * the crash, from the same backlog).
 */
export const MAX_CLAIM_BYTES = 8 * 1024 * 1024;

export interface ClaimOptions {
  /** Most deliveries to claim. */
  readonly limit: number;
  /** How long a claim holds: next_attempt_at is set this far ahead. */
  readonly leaseMs: number;
  /** Endpoints none of whose deliveries may be claimed (open breaker, at their cap). */
  readonly excluded: readonly string[];
  /** Endpoints that may take fewer than `perEndpoint` (in flight already, half-open probe). */
  readonly limited: ReadonlyMap<string, number>;
  /** Most deliveries of one endpoint claimed at once otherwise. */
  readonly perEndpoint: number;
}

// Claimed per endpoint: for each enabled endpoint not excluded, its oldest due deliveries up to
// its share (deliveries_endpoint_due_idx: an ordered index scan that stops at the share), FIFO
// heads only (a delivery with an earlier pending one of the same endpoint and key waits: pending
// includes in flight, so a failing head holds back its key alone). Of those, the oldest `limit`
// are taken — stopping once MAX_CLAIM_BYTES of payloads are (messages.payload_bytes, summed in
// the same order; the first is always taken) — then locked, skipping rows another worker holds,
// and re-checked after the lock (a row claimed meanwhile is no longer due).
//
// Why per endpoint and not one scan of all due deliveries by time: such a scan's window filled
// with whatever was oldest — a dead endpoint's backlog while its breaker let one probe through,
// a slow endpoint's while it was one short of its cap — and every other endpoint waited for the
// next claim; and the scan read every due row of excluded endpoints, and (as a bitmap scan)
// every dead index entry since the last vacuum. Here an endpoint costs one index probe a claim
// whatever it has queued: the claim grows with the number of enabled endpoints instead
// (measured: see README, Performance). Deliveries of disabled endpoints stay pending, unclaimed,
// until the endpoint is enabled again.
/**
 * "Still pending", written so that it does not imply the partial indexes' `status = 'pending'`
 * (status is one of pending, succeeded, failed). Where deliveries are looked up by id — the
 * picks of a claim, the deliveries a batch settles — only the primary key may find them. With
 * `status = 'pending'` the planner could use deliveries_endpoint_due_idx instead, and did when
 * the statistics still said no delivery was pending (a queue that had just drained): it read
 * every due delivery and, per row, evaluated the picks again — 590,000 message lookups and
 * 2.2 s for one claim of 41 in the benchmark, and the queue fell 40 s behind.
 */
const STILL_PENDING = (alias: string) => `${alias}.status not in ('succeeded', 'failed')`;

/** A delivery's next_attempt_at in µs since the epoch, exactly (extract gives a numeric). */
const LEASE_UNTIL = (alias: string) =>
  `(extract(epoch from ${alias}.next_attempt_at) * 1000000)::bigint::text`;

const CLAIM_SQL = `
with eligible as (
  select e.id, coalesce(l.remaining, $2::int) as share
    from sluice_webhooks.endpoints e
    left join unnest($3::uuid[], $4::int[]) as l(endpoint_id, remaining) on l.endpoint_id = e.id
   where e.enabled and e.id <> all ($1::uuid[])
), candidates as (
  select c.id, c.message_id, c.next_attempt_at
    from eligible el
    cross join lateral (
      select d.id, d.message_id, d.next_attempt_at
        from sluice_webhooks.deliveries d
       where d.endpoint_id = el.id and d.status = 'pending' and d.next_attempt_at <= now()
         and (d.fifo_key is null or not exists (
               select 1 from sluice_webhooks.deliveries p
                where p.endpoint_id = d.endpoint_id and p.fifo_key = d.fifo_key
                  and p.status = 'pending' and p.id < d.id))
       order by d.next_attempt_at, d.id
       limit el.share
    ) c
   order by c.next_attempt_at, c.id
   limit $5
), sized as (
  select c.id, c.next_attempt_at,
         sum(m.payload_bytes) over (order by c.next_attempt_at, c.id) - m.payload_bytes as bytes_before
    from candidates c join sluice_webhooks.messages m on m.id = c.message_id
), picked as (
  select d.id
    from sluice_webhooks.deliveries d
   where d.id = any (array(select s.id from sized s where s.bytes_before < $7))
     and ${STILL_PENDING('d')} and d.next_attempt_at <= now()
   for no key update of d skip locked
)
update sluice_webhooks.deliveries d
   set attempts = d.attempts + 1,
       next_attempt_at = now() + $6::bigint * interval '1 millisecond',
       lease_token = gen_random_uuid(),
       updated_at = now()
  from picked p, sluice_webhooks.endpoints e, sluice_webhooks.messages m
 where d.id = p.id and e.id = d.endpoint_id and m.id = d.message_id
returning d.id, d.message_id, d.endpoint_id, d.tenant_id, d.attempts, d.lease_token,
          ${LEASE_UNTIL('d')} as lease_until, d.fifo_key is not null as fifo,
          e.url, e.headers::text as headers, e.send_traceparent, (extract(epoch from e.failing_since) * 1000)::bigint as failing_since_ms,
          (select coalesce(json_agg(s.secret order by s.id desc), '[]')::text
             from sluice_webhooks.secrets s
            where s.endpoint_id = d.endpoint_id and (s.expires_at is null or s.expires_at > now())) as secrets,
          '{"type":' || to_json(m.event_type)::text
            || ',"timestamp":' || to_json(to_char(m.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))::text
            || ',"data":' || m.payload::text || '}' as body,
          m.traceparent,
          (extract(epoch from m.created_at) * 1000)::bigint as created_ms, m.payload_bytes`;

interface ClaimRow {
  id: string;
  message_id: string;
  endpoint_id: string;
  tenant_id: string | null;
  attempts: string;
  lease_token: string;
  lease_until: string;
  fifo: string | boolean;
  url: string;
  headers: string;
  send_traceparent: string | boolean;
  failing_since_ms: string | null;
  secrets: string;
  body: string;
  traceparent: string | null;
  created_ms: string;
  payload_bytes: string | number;
}

const bool = (v: string | boolean) => v === true || v === 't' || v === 'true';

function stringMap(json: string): Record<string, string> {
  const out: Record<string, string> = {};
  try {
    const value: unknown = JSON.parse(json);
    if (typeof value === 'object' && value !== null && !Array.isArray(value))
      for (const [k, v] of Object.entries(value)) if (typeof v === 'string') out[k] = v;
  } catch {
    // Written by the admin API as an object; anything else reads as no headers.
  }
  return out;
}

/**
 * Claims due deliveries for one attempt each: attempts + 1, a new lease token, and
 * next_attempt_at moved to the lease's end, in one statement. A worker that dies leaves the
 * delivery due again when the lease ends (same message, same webhook-id).
 */
export async function claimDeliveries(pool: pg.Pool, options: ClaimOptions): Promise<ClaimedDelivery[]> {
  const limitedIds = [...options.limited.keys()];
  const limitedCaps = limitedIds.map((id) => options.limited.get(id) as number);
  // Unnamed on purpose, like every statement here: a named (prepared) statement switches to a
  // generic plan after five runs, planned once from whatever the statistics said then — for a
  // queue table that starts empty, seq scans of deliveries and messages kept for the
  // connection's life (claims went from ~3 ms to 0.2–0.7 s once the tables held 50,000 rows
  // and autovacuum had not analyzed them yet). An unnamed statement is planned each time from
  // the tables' current size.
  const { rows } = await pool.query<ClaimRow>({
    text: CLAIM_SQL,
    values: [
      options.excluded,
      options.perEndpoint,
      limitedIds,
      limitedCaps,
      options.limit,
      Math.round(options.leaseMs),
      MAX_CLAIM_BYTES,
    ],
  });
  return rows.map((r) => ({
    id: r.id,
    messageId: r.message_id,
    endpointId: r.endpoint_id,
    tenantId: r.tenant_id,
    attempt: Number(r.attempts),
    leaseToken: r.lease_token,
    leaseUntil: String(r.lease_until),
    url: r.url,
    headers: stringMap(r.headers),
    fifo: bool(r.fifo),
    sendTraceparent: bool(r.send_traceparent),
    failingSinceMs: r.failing_since_ms === null ? undefined : Number(r.failing_since_ms),
    secrets: (JSON.parse(r.secrets) as unknown[]).filter((s): s is string => typeof s === 'string'),
    body: r.body,
    traceparent: r.traceparent,
    messageCreatedMs: Number(r.created_ms),
    payloadBytes: Number(r.payload_bytes),
  }));
}

const ATTEMPT_COLUMNS = `(delivery_id, message_id, endpoint_id, tenant_id, attempt, started_at,
  duration_ms, status_code, outcome, error, response_body)`;

function attemptValues(d: ClaimedDelivery, startedAt: Date, r: AttemptResult): unknown[] {
  return [
    d.id,
    d.messageId,
    d.endpointId,
    d.tenantId,
    d.attempt,
    startedAt.toISOString(),
    r.durationMs,
    r.statusCode ?? null,
    r.outcome,
    r.error ?? null,
    r.responseBody ?? null,
  ];
}

/** What settling attempts did. */
export interface Settled {
  /** False when the lease had run out (another attempt owns the delivery now): nothing changed but the attempt record. */
  readonly settled: boolean;
  /** Operational events stored with it (to announce: they are committed). */
  readonly events: readonly OperationalEvent[];
}

export interface SucceededAttempt {
  readonly delivery: ClaimedDelivery;
  readonly startedAt: Date;
  readonly result: AttemptResult;
}

/** A time as the external ids of operational events spell it: microseconds since the epoch. */
const MICROS = (column: string) => `(extract(epoch from ${column}) * 1000000)::bigint::text`;
const ISO = (column: string) => `to_char(${column} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

// Successes settled by one statement, the common case at volume: one round trip and one commit
// (one WAL flush) per batch instead of one each. Each attempt is recorded whatever the lease
// says (it happened) unless the delivery is gone (its message was deleted); a delivery is
// settled only while the lease is still ours (its token, and its end: a replay moves it).
// Endpoints that were failing are failing no more, and the ones whose failing was reported (an endpoint.failing event for that period) get an
// endpoint.recovered event in the same commit (an endpoint row held by a failure right now is
// skipped: see FAIL_SQL). Delivery rows are locked in id order, so two batches never wait on
// each other in a cycle. Locks are
// FOR NO KEY UPDATE throughout: inserting messages, deliveries and attempts takes KEY SHARE locks
// on the rows they reference (foreign keys), and FOR UPDATE would wait for the fan-out's open
// transactions (and make them wait) for nothing — no key ever changes here.
const SUCCEED_MANY_SQL = `
with input as (
  select * from unnest($1::bigint[], $2::uuid[], $3::uuid[], $4::uuid[], $5::int[], $6::timestamptz[],
                       $7::int[], $8::int[], $9::text[], $10::text[], $11::text[], $12::uuid[], $13::text[])
    as t(delivery_id, message_id, endpoint_id, tenant_id, attempt, started_at, duration_ms,
         status_code, outcome, error, response_body, lease_token, lease_until)
), locked as (
  select d.id, d.endpoint_id from sluice_webhooks.deliveries d join input i on i.delivery_id = d.id
   where d.lease_token = i.lease_token and ${STILL_PENDING('d')} and ${LEASE_UNTIL('d')} = i.lease_until
   order by d.id for no key update of d
), settled as (
  update sluice_webhooks.deliveries d
     set status = 'succeeded', lease_token = null, updated_at = now()
    from locked l where d.id = l.id
  returning d.id
), recorded as (
  insert into sluice_webhooks.attempts ${ATTEMPT_COLUMNS}
  select i.delivery_id, i.message_id, i.endpoint_id, i.tenant_id, i.attempt, i.started_at, i.duration_ms,
         i.status_code, i.outcome, i.error, i.response_body
    from input i where exists (select 1 from sluice_webhooks.deliveries where id = i.delivery_id)
), failing as (
  select e.id, e.tenant_id, e.failing_since from sluice_webhooks.endpoints e
   where e.id in (select endpoint_id from locked) and e.failing_since is not null
   order by e.id for no key update of e skip locked
), cleared as (
  update sluice_webhooks.endpoints e set failing_since = null, updated_at = now()
    from failing f where e.id = f.id
  returning e.id, f.tenant_id, f.failing_since
), recovered as (
  insert into sluice_webhooks.inbox (source_id, tenant_id, external_id, event_type, headers, body)
  select s.id, c.tenant_id, 'recovered:' || c.id || ':' || ${MICROS('c.failing_since')}, 'endpoint.recovered', '{}',
         convert_to(json_build_object(
           'type', 'endpoint.recovered', 'endpoint_id', c.id, 'timestamp', ${ISO('now()')},
           'failing_since', ${ISO('c.failing_since')})::text, 'UTF8')
    from cleared c join sluice_webhooks.sources s on s.name = '${OPERATIONAL_SOURCE}'
   where exists (select 1 from sluice_webhooks.inbox f
                  where f.source_id = s.id
                    and f.external_id = 'failing:' || c.id || ':' || ${MICROS('c.failing_since')})
  on conflict (source_id, external_id) do nothing
  returning tenant_id, external_id, convert_from(body, 'UTF8') as body
)
select 'settled' as kind, id::text as id, null::uuid as tenant_id, null as body from settled
union all
select 'recovered', external_id, tenant_id, body from recovered`;

/**
 * Settles successful attempts in one statement (see SUCCEED_MANY_SQL). Returns the ids of the
 * deliveries settled (the others had lost their lease; their attempts are recorded all the same)
 * and the endpoint.recovered events stored.
 */
export async function settleSuccesses(
  pool: pg.Pool,
  attempts: readonly SucceededAttempt[],
): Promise<{ settled: Set<string>; events: OperationalEvent[] }> {
  const columns: unknown[][] = Array.from({ length: 13 }, () => []);
  for (const a of attempts) {
    const values = [
      ...attemptValues(a.delivery, a.startedAt, a.result),
      a.delivery.leaseToken,
      a.delivery.leaseUntil,
    ];
    values.forEach((v, i) => {
      (columns[i] as unknown[]).push(v);
    });
  }
  const { rows } = await pool.query<{
    kind: string;
    id: string;
    tenant_id: string | null;
    body: string | null;
  }>({
    text: SUCCEED_MANY_SQL,
    values: columns,
  });
  const settled = new Set<string>();
  const events: OperationalEvent[] = [];
  for (const r of rows) {
    if (r.kind === 'settled') {
      settled.add(String(r.id));
      continue;
    }
    const [, endpointId = '', occurrence = ''] = r.id.split(':');
    const body = JSON.parse(r.body ?? '{}') as Record<string, unknown>;
    events.push({
      event: 'recovered',
      endpointId,
      tenantId: r.tenant_id,
      occurrence,
      details: { failing_since: body.failing_since },
    });
  }
  return { settled, events };
}

// A failed attempt in one statement: the delivery due again after the retry delay (or failed),
// the attempt recorded, and the endpoint failing since now unless it already was.
//
// Marking an endpoint failing (here) and ending its failing period (a success batch) skip an
// endpoint row the other holds locked instead of waiting: with failures and successes mixed,
// waiting made every batch wait for failures and every failure for batches (first-try p99
// 2-4 s instead of 0.2-0.4 s in the benchmark with 20 % failures). What is skipped is a state
// the other is changing right now — a failure during a batch that ends the period, or a success
// during a failure that starts one — and the next attempt of that endpoint decides again.
const FAIL_SQL = `
with settled as (
  update sluice_webhooks.deliveries
     set status = $13, next_attempt_at = now() + $14::bigint * interval '1 millisecond',
         lease_token = null, updated_at = now()
   where id = $1 and lease_token = $12 and status = 'pending'
     and ${LEASE_UNTIL('sluice_webhooks.deliveries')} = $15
  returning id
), recorded as (
  insert into sluice_webhooks.attempts ${ATTEMPT_COLUMNS}
  select $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11
   where exists (select 1 from sluice_webhooks.deliveries where id = $1)
), unmarked as (
  select id from sluice_webhooks.endpoints
   where id = $3 and failing_since is null and exists (select 1 from settled)
  for no key update skip locked
), marked as (
  update sluice_webhooks.endpoints e set failing_since = now(), updated_at = now()
    from unmarked u where e.id = u.id
  returning e.id
)
select count(*)::int as settled from settled`;

export interface FailureDecision {
  /** Ms until the next attempt, or undefined: the delivery failed for good. */
  readonly retryInMs: number | undefined;
  /** 410 Gone: disable the endpoint (reason 'gone'). */
  readonly gone: boolean;
  /** Report the endpoint failing (endpoint.failing, once per failing period). */
  readonly reportFailing: boolean;
  /** The endpoint may have been failing longer than disableAfterFailingMs: check, and disable it (reason 'failing'). */
  readonly checkDisable: boolean;
  readonly disableAfterFailingMs: number;
  /** Why it failed for good, for the exhausted event ('exhausted' or 'blocked'). */
  readonly finalReason: string;
}

/**
 * Settles a failed attempt: recorded; the delivery due again after `retryInMs` or failed; the
 * endpoint failing since its first failure after a success. One statement, unless something is
 * to report or decide — the delivery failed for good (message.exhausted), the failure is to be
 * reported (endpoint.failing), the endpoint is gone or may have failed too long (disabled) —
 * then one transaction with the events, so a state change and its event commit together.
 */
export async function settleFailure(
  pool: pg.Pool,
  d: ClaimedDelivery,
  startedAt: Date,
  result: AttemptResult,
  decision: FailureDecision,
): Promise<Settled> {
  const failed = decision.retryInMs === undefined;
  const values = [
    ...attemptValues(d, startedAt, result),
    d.leaseToken,
    failed ? 'failed' : 'pending',
    decision.retryInMs ?? 0,
    d.leaseUntil,
  ];
  if (!failed && !decision.gone && !decision.reportFailing && !decision.checkDisable) {
    const { rows } = await pool.query<{ settled: string | number }>({
      text: FAIL_SQL,
      values,
    });
    return { settled: Number(rows[0]?.settled) > 0, events: [] };
  }
  return inTransaction(pool, async (client) => {
    const { rows } = await client.query<{ settled: string | number }>(FAIL_SQL, values);
    if (Number(rows[0]?.settled) === 0) return { settled: false, events: [] };
    const events: OperationalEvent[] = [];
    const base = { endpointId: d.endpointId, tenantId: d.tenantId };
    const store = async (e: OperationalEvent) => {
      if (await storeOperationalEvent(client, e)) events.push(e);
    };
    if (decision.reportFailing || failed) {
      const { rows: ep } = await client.query<{ since: string; iso: string }>(
        `select ${MICROS('failing_since')} as since, ${ISO('failing_since')} as iso
           from sluice_webhooks.endpoints where id = $1 and failing_since is not null`,
        [d.endpointId],
      );
      const period = ep[0];
      if (period)
        await store({
          ...base,
          event: 'failing',
          occurrence: period.since,
          details: {
            failing_since: period.iso,
            message_id: d.messageId,
            attempts: d.attempt,
            error: result.error ?? null,
          },
        });
    }
    if (failed)
      await store({
        ...base,
        event: 'exhausted',
        occurrence: d.id,
        details: {
          message_id: d.messageId,
          delivery_id: d.id,
          attempts: d.attempt,
          reason: decision.finalReason,
          error: result.error ?? null,
        },
      });
    if (decision.gone || decision.checkDisable) {
      // Disabling clears failing_since: an endpoint enabled again starts with a clean slate.
      const { rows: off } = await client.query<{ reason: string; at: string; failing_since: string | null }>(
        `with old as (
           select id, failing_since from sluice_webhooks.endpoints
            where id = $1 and enabled
              and ($2 or failing_since <= now() - $3::bigint * interval '1 millisecond')
            for no key update)
         update sluice_webhooks.endpoints e
            set enabled = false, disabled_reason = case when $2 then 'gone' else 'failing' end,
                failing_since = null, updated_at = now()
           from old where e.id = old.id
         returning e.disabled_reason as reason, ${MICROS('e.updated_at')} as at, ${ISO('old.failing_since')} as failing_since`,
        [d.endpointId, decision.gone, decision.disableAfterFailingMs],
      );
      const disabled = off[0];
      if (disabled)
        await store({
          ...base,
          event: 'disabled',
          occurrence: disabled.at,
          details: {
            reason: disabled.reason,
            failing_since: disabled.failing_since,
            message_id: d.messageId,
            status_code: result.statusCode ?? null,
          },
        });
    }
    return { settled: true, events };
  });
}

async function inTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let failure: unknown;
  try {
    await client.query('begin');
    const out = await fn(client);
    await client.query('commit');
    return out;
  } catch (error) {
    failure = error;
    await client.query('rollback').catch(() => {});
    throw error;
  } finally {
    releaseClient(client, failure);
  }
}
