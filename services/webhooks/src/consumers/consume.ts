import { abortError, type ConcurrencyLimit, invalidArgument, Reason, SluiceError } from '@sluice/core';
import {
  compile,
  type Database,
  type RequestScope,
  type SchemaCatalog,
  type StatementResult,
} from '@sluice/db';
import { webhooks } from '@sluice/proto';
import { sql } from 'kysely';
import type { Logger } from 'pino';
import { type Context, callerTenant, isServiceRole, rowsOf, scopeOf, timestampOf } from '../admin/common';
import { kindOf, SOURCE_NAME } from '../admin/sources';
import type { ConsumerSettings } from '../config';
import { consumerAcked, consumerEventsSent } from './metrics';
import type { ConsumerWakeup } from './wakeup';

/**
 * Named durable consumers of inbound events (Consume, Ack), over sluice_webhooks.consumers and
 * consumer_events. Each event a stream is sent is leased to it in consumer_events until
 * acknowledged or until the lease ends; the claim is one INSERT … ON CONFLICT DO UPDATE that
 * takes an event only when no live lease or acknowledgement exists, so two streams of one
 * consumer never hold the same event (a concurrent claimer waits for the other's commit and
 * then finds the lease). Everything runs under the caller's identity: a tenant's admin
 * consumes only its tenant's events (RLS on the inbox), service_role every event.
 */

export interface ConsumerDeps {
  readonly db: Database;
  readonly catalog: () => SchemaCatalog;
  readonly settings: ConsumerSettings;
  readonly logger: Logger;
  readonly draining: AbortSignal;
  readonly wakeup: ConsumerWakeup;
  /** Open Consume streams per identity and in total (RESOURCE_EXHAUSTED beyond). */
  readonly streams: ConcurrencyLimit;
  /** The typed change of a supabase-database body (inbound/supabase-change.ts); throws when it does not fit. */
  readonly typedChange?: (catalog: SchemaCatalog, body: Buffer) => webhooks.TypedChange;
}

const CONSUMER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const MAX_IN_FLIGHT = 1000;
const MAX_ACK_TIMEOUT_SECONDS = 3600;
const MAX_SOURCES = 100;
const MAX_ACK_IDS = 10_000;
/** How often a stream moves its consumer's floor up. */
const FLOOR_INTERVAL_MS = 30_000;
/**
 * The floor only passes events received longer ago than this: an insert still uncommitted
 * with a lower id than a visible one would otherwise be jumped over (ids are taken at insert,
 * visible at commit).
 */
const FLOOR_MARGIN_SECONDS = 300;
const NO_TENANT = '00000000-0000-0000-0000-000000000000';
/**
 * Body bytes one claim reads at most (always at least one event): a backlog of large events
 * under a large max_in_flight would otherwise come back in one result, GBs in memory at once.
 */
const MAX_CLAIM_BYTES = 8 * 1024 * 1024;

interface ConsumerRow {
  readonly id: string;
  /** Source ids the consumer receives; undefined: all it may see. */
  readonly sourceIds: readonly string[] | undefined;
  /** Its tenant (null: service_role's, every tenant's events). */
  readonly tenant: string | null;
}

/**
 * A tenant consumer's scans name its tenant besides RLS: the policy's check parses the claims
 * on every row it looks at (seconds over a few hundred thousand events of other tenants, on
 * every poll), while a plain uuid comparison is cheap and, being leakproof, runs before it.
 */
function tenantOnly(consumer: ConsumerRow) {
  return consumer.tenant === null ? sql`` : sql` and i.tenant_id = ${consumer.tenant}::uuid`;
}

function shuttingDown(): SluiceError {
  return new SluiceError('UNAVAILABLE', 'The server is shutting down; reconnect to go on consuming', {
    reason: Reason.shuttingDown,
  });
}

function consumerName(name: string, field: string): string {
  if (!CONSUMER_NAME.test(name))
    throw invalidArgument(
      Reason.invalidValue,
      field,
      "a consumer name: letters, digits, '.', '_', '-', starting with a letter or digit, at most 128",
    );
  return name;
}

/** The tenant a consumer belongs to: the caller's (service_role: none, every tenant's events). */
const tenantOf = (context: Context): string | null => (isServiceRole(context) ? null : callerTenant(context));

/** A bytea column as PostgreSQL's text output ("\x" + hex). */
function bytesOf(text: string | null | undefined): Buffer {
  return text?.startsWith('\\x') ? Buffer.from(text.slice(2), 'hex') : Buffer.alloc(0);
}

function jsonText(body: Buffer): string {
  if (body.length === 0) return '';
  const text = body.toString('utf8');
  try {
    JSON.parse(text);
    return text;
  } catch {
    return '';
  }
}

function headersOf(text: string | null | undefined): Record<string, string> {
  const parsed = JSON.parse(text ?? '{}') as Record<string, unknown>;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(parsed)) {
    if (typeof v === 'string') out[k] = v;
    else if (Array.isArray(v)) out[k] = v.join(', ');
  }
  return out;
}

const CLAIMED_COLUMNS = sql`c.event_id::text as event_id, c.deliveries, s.name, s.kind, i.external_id, i.received_at,
  i.headers::text as headers, i.body, i.event_type, i.traceparent, i.tenant_id`;

export function consumerHandlers(deps: ConsumerDeps) {
  const { db, settings } = deps;

  function toEvent(row: Record<string, string | null>): webhooks.InboundEvent {
    const body = bytesOf(row.body);
    const kind = kindOf(row.kind);
    let change: webhooks.TypedChange | undefined;
    if (kind === webhooks.SourceKind.SOURCE_KIND_SUPABASE_DATABASE && deps.typedChange) {
      try {
        change = deps.typedChange(deps.catalog(), body);
      } catch (error) {
        // Checked when received; the table may have changed since. The raw body still goes out.
        deps.logger.debug(
          { err: error, event_id: row.event_id },
          'consumer: stored change no longer fits the catalog',
        );
      }
    }
    return {
      id: row.event_id ?? '',
      source: row.name ?? '',
      kind,
      externalId: row.external_id ?? '',
      receivedAt: timestampOf(row.received_at),
      headers: headersOf(row.headers),
      body,
      json: jsonText(body),
      eventType: row.event_type ?? '',
      change,
      traceparent: row.traceparent ?? '',
      deliveryAttempt: Number(row.deliveries ?? 1),
      tenantId: row.tenant_id ?? '',
    };
  }

  /** Finds the consumer, creating it on first use (its sources fixed then). */
  async function openConsumer(
    scope: RequestScope,
    tenant: string | null,
    name: string,
    sources: readonly string[],
  ) {
    return db.transaction(scope, async (tx): Promise<ConsumerRow> => {
      const find = compile(sql`select id, sources::text as sources from sluice_webhooks.consumers
        where coalesce(tenant_id, ${NO_TENANT}::uuid) = coalesce(${tenant}::uuid, ${NO_TENANT}::uuid) and name = ${name}`);
      let row = rowsOf(await tx.query(find))[0];
      if (!row) {
        const known = rowsOf(
          await tx.query(
            compile(sql`select name from sluice_webhooks.sources where name = any(${sources}::text[])`),
          ),
        );
        const names = new Set(known.map((r) => r.name));
        sources.forEach((s, i) => {
          if (!names.has(s)) throw invalidArgument(Reason.invalidValue, `sources[${i}]`, `No source ${s}`);
        });
        // Events received before the consumer existed are not its: the floor starts at the end.
        await tx.query(
          compile(sql`insert into sluice_webhooks.consumers (tenant_id, name, sources, floor_id)
            select ${tenant}::uuid, ${name}, ${sources}::text[], coalesce(max(i.id), 0) from sluice_webhooks.inbox i
            on conflict do nothing`),
        );
        row = rowsOf(await tx.query(find))[0];
        if (!row) throw new SluiceError('ABORTED', 'The consumer is being created concurrently; retry');
      }
      const stored = parseTextArray(row.sources);
      if (sources.length > 0 && [...sources].sort().join('\n') !== [...stored].sort().join('\n')) {
        throw new SluiceError('FAILED_PRECONDITION', `Consumer ${name} was created with other sources`, {
          reason: Reason.failedPrecondition,
          violations: [
            {
              field: 'sources',
              description: `the consumer's sources are fixed: ${stored.join(', ') || 'all'}`,
            },
          ],
        });
      }
      if (stored.length === 0) return { id: row.id ?? '', sourceIds: undefined, tenant };
      const ids = rowsOf(
        await tx.query(
          compile(sql`select id from sluice_webhooks.sources where name = any(${stored}::text[])`),
        ),
      );
      return { id: row.id ?? '', sourceIds: ids.map((r) => r.id ?? ''), tenant };
    });
  }

  /**
   * Drops acknowledged events from `inFlight`, then leases up to the free capacity of events
   * after the floor that are neither acknowledged nor leased (or whose lease ended).
   */
  async function claim(
    scope: RequestScope,
    consumer: ConsumerRow,
    inFlight: Map<string, number>,
    maxInFlight: number,
    ackTimeoutSeconds: number,
  ): Promise<Record<string, string | null>[]> {
    return db.transaction(scope, async (tx) => {
      if (inFlight.size > 0) {
        const acked = await tx.query(
          compile(sql`select event_id::text from sluice_webhooks.consumer_events
            where consumer_id = ${consumer.id}::uuid and event_id = any(${[...inFlight.keys()]}::bigint[])
              and acked_at is not null`),
        );
        for (const [id] of acked.rows) inFlight.delete(id ?? '');
      }
      const capacity = maxInFlight - inFlight.size;
      if (capacity <= 0) return [];
      const all = consumer.sourceIds === undefined;
      const sourceIds = consumer.sourceIds ?? [];
      const result: StatementResult = await tx.query(
        compile(sql`with open as (
            select i.id, i.tenant_id,
                   -- octet_length of a stored bytea reads its size, not the value.
                   sum(octet_length(i.body)) over (order by i.id) - octet_length(i.body) as bytes_before
              from sluice_webhooks.inbox i
             where i.id > (select floor_id from sluice_webhooks.consumers where id = ${consumer.id}::uuid)
               and (${all}::boolean or i.source_id = any(${sourceIds}::uuid[]))${tenantOnly(consumer)}
               and not exists (
                 select 1 from sluice_webhooks.consumer_events ce
                  where ce.consumer_id = ${consumer.id}::uuid and ce.event_id = i.id
                    and (ce.acked_at is not null or ce.lease_until >= now()))
             order by i.id
             limit ${capacity}
          ), candidates as (
            select id, tenant_id from open where bytes_before < ${MAX_CLAIM_BYTES}
          ), c as (
            insert into sluice_webhooks.consumer_events as ce (consumer_id, event_id, tenant_id, lease_until, deliveries)
            select ${consumer.id}::uuid, id, tenant_id, now() + make_interval(secs => ${ackTimeoutSeconds}), 1 from candidates
            on conflict (consumer_id, event_id) do update
               set lease_until = excluded.lease_until, deliveries = ce.deliveries + 1
             where ce.acked_at is null and ce.lease_until < now()
            returning ce.event_id, ce.deliveries
          )
          -- A left join: an event claimed is always sent, even where its source is not readable.
          select ${CLAIMED_COLUMNS}
            from c join sluice_webhooks.inbox i on i.id = c.event_id
            left join sluice_webhooks.sources s on s.id = i.source_id
           order by c.event_id`),
      );
      const rows = rowsOf(result);
      const until = Date.now() + ackTimeoutSeconds * 1000;
      for (const r of rows) inFlight.set(r.event_id ?? '', until);
      return rows;
    });
  }

  /**
   * Moves the floor up to just before the first event not acknowledged, but never past events
   * received within the safety margin, and forgets the acknowledgements below it (one
   * transaction: a claim sees either the old floor and the rows, or the new floor).
   */
  async function advanceFloor(scope: RequestScope, consumer: ConsumerRow): Promise<void> {
    const all = consumer.sourceIds === undefined;
    const sourceIds = consumer.sourceIds ?? [];
    await db.run(scope, [
      compile(sql`with bound as (
          select i.id from sluice_webhooks.inbox i
           where i.received_at < now() - make_interval(secs => ${FLOOR_MARGIN_SECONDS})${tenantOnly(consumer)}
           order by i.received_at desc, i.id desc limit 1
        ), first_open as (
          select min(i.id) as id from sluice_webhooks.inbox i
           where i.id > (select floor_id from sluice_webhooks.consumers where id = ${consumer.id}::uuid)
             and i.id <= (select id from bound)
             and (${all}::boolean or i.source_id = any(${sourceIds}::uuid[]))${tenantOnly(consumer)}
             and not exists (
               select 1 from sluice_webhooks.consumer_events ce
                where ce.consumer_id = ${consumer.id}::uuid and ce.event_id = i.id and ce.acked_at is not null)
        )
        update sluice_webhooks.consumers c
           set floor_id = greatest(c.floor_id, coalesce((select id - 1 from first_open), (select id from bound)))
         where c.id = ${consumer.id}::uuid and exists (select 1 from bound)`),
      compile(sql`delete from sluice_webhooks.consumer_events ce
        where ce.consumer_id = ${consumer.id}::uuid
          and ce.event_id <= (select floor_id from sluice_webhooks.consumers where id = ${consumer.id}::uuid)`),
    ]);
  }

  return {
    async *consume(
      req: webhooks.ConsumeRequest,
      context: Context,
    ): AsyncGenerator<webhooks.ConsumeResponse, void, undefined> {
      const name = consumerName(req.consumer, 'consumer');
      if (req.maxInFlight > MAX_IN_FLIGHT)
        throw invalidArgument(Reason.invalidValue, 'max_in_flight', `at most ${MAX_IN_FLIGHT}`);
      if (req.ackTimeoutSeconds > MAX_ACK_TIMEOUT_SECONDS)
        throw invalidArgument(Reason.invalidValue, 'ack_timeout_seconds', `1 to ${MAX_ACK_TIMEOUT_SECONDS}`);
      if (req.sources.length > MAX_SOURCES)
        throw invalidArgument(Reason.invalidValue, 'sources', `at most ${MAX_SOURCES} sources`);
      req.sources.forEach((s, i) => {
        if (!SOURCE_NAME.test(s))
          throw invalidArgument(Reason.invalidValue, `sources[${i}]`, 'not a source name');
      });
      using _stream = deps.streams.acquire(context.identity);
      const maxInFlight = req.maxInFlight || settings.defaultMaxInFlight;
      const ackTimeoutSeconds = req.ackTimeoutSeconds || settings.defaultAckTimeoutSeconds;
      const { signal } = context.sluice;
      if (deps.draining.aborted) throw shuttingDown();
      const scope = scopeOf(context, false);
      const consumer = await openConsumer(scope, tenantOf(context), name, [...new Set(req.sources)]);

      // Woken by new inbox events, by acks on this process, by draining and by cancellation.
      let poked = false;
      let resolveWait: (() => void) | undefined;
      const poke = () => {
        poked = true;
        resolveWait?.();
      };
      const unsubscribe = deps.wakeup.subscribe((consumerId) => {
        if (consumerId === undefined || consumerId === consumer.id) poke();
      });
      deps.draining.addEventListener('abort', poke);
      signal.addEventListener('abort', poke);
      const inFlight = new Map<string, number>();
      let lastSent = Date.now();
      let lastFloor = 0;
      try {
        for (;;) {
          if (signal.aborted) throw abortError(signal);
          if (deps.draining.aborted) throw shuttingDown();
          const now = Date.now();
          for (const [id, until] of inFlight) if (until <= now) inFlight.delete(id);
          poked = false;
          const rows = await claim(scope, consumer, inFlight, maxInFlight, ackTimeoutSeconds);
          for (const row of rows) {
            consumerEventsSent.inc();
            yield { message: { $case: 'event', value: toEvent(row) } };
          }
          if (rows.length > 0) lastSent = Date.now();
          // A full batch: there may be more right away.
          if (rows.length > 0 && inFlight.size < maxInFlight) continue;
          if (Date.now() - lastFloor >= FLOOR_INTERVAL_MS) {
            lastFloor = Date.now();
            await advanceFloor(scope, consumer);
          }
          const sinceSent = Date.now() - lastSent;
          let waitMs = Math.min(settings.pollIntervalMs, Math.max(0, settings.heartbeatMs - sinceSent));
          for (const until of inFlight.values()) waitMs = Math.min(waitMs, Math.max(0, until - Date.now()));
          if (!poked && waitMs > 0) {
            await new Promise<void>((resolve) => {
              const timer = setTimeout(resolve, waitMs);
              resolveWait = () => {
                clearTimeout(timer);
                resolve();
              };
            });
            resolveWait = undefined;
          }
          if (Date.now() - lastSent >= settings.heartbeatMs && !signal.aborted && !deps.draining.aborted) {
            lastSent = Date.now();
            yield { message: { $case: 'heartbeat', value: { serverTime: dateTimestamp(new Date()) } } };
          }
        }
      } finally {
        unsubscribe();
        deps.draining.removeEventListener('abort', poke);
        signal.removeEventListener('abort', poke);
      }
    },

    async ack(req: webhooks.AckRequest, context: Context): Promise<webhooks.AckResponse> {
      const name = consumerName(req.consumer, 'consumer');
      if (req.eventIds.length > MAX_ACK_IDS)
        throw invalidArgument(Reason.invalidValue, 'event_ids', `at most ${MAX_ACK_IDS} per call`);
      req.eventIds.forEach((id, i) => {
        if (!/^[1-9]\d{0,18}$/.test(id))
          throw invalidArgument(Reason.invalidValue, `event_ids[${i}]`, 'not an event id');
      });
      const tenant = tenantOf(context);
      const { consumerId, acked } = await db.transaction(scopeOf(context, false), async (tx) => {
        const row = rowsOf(
          await tx.query(
            compile(sql`select id from sluice_webhooks.consumers
              where coalesce(tenant_id, ${NO_TENANT}::uuid) = coalesce(${tenant}::uuid, ${NO_TENANT}::uuid) and name = ${name}`),
          ),
        )[0];
        if (!row?.id) throw new SluiceError('NOT_FOUND', `No consumer ${name}`, { reason: Reason.notFound });
        if (req.eventIds.length === 0) return { consumerId: row.id, acked: 0 };
        const updated = await tx.query(
          compile(sql`update sluice_webhooks.consumer_events set acked_at = now()
            where consumer_id = ${row.id}::uuid and event_id = any(${req.eventIds}::bigint[]) and acked_at is null`),
        );
        return { consumerId: row.id, acked: updated.rowCount };
      });
      consumerAcked.inc(acked);
      if (acked > 0) deps.wakeup.acked(consumerId);
      return { acked };
    },
  };
}

function dateTimestamp(date: Date): { seconds: bigint; nanos: number } {
  const ms = date.getTime();
  return { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
}

/** A text[] as PostgreSQL's text output ({a,b}); source names never need quoting. */
function parseTextArray(text: string | null | undefined): string[] {
  if (!text || text === '{}') return [];
  return text
    .slice(1, -1)
    .split(',')
    .map((s) => s.replace(/^"(.*)"$/, '$1'));
}
