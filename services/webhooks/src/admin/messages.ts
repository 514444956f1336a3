import { Reason, SluiceError } from '@sluice/core';
import { compile, type Database, type RequestTransaction } from '@sluice/db';
import { webhooks } from '@sluice/proto';
import { sql } from 'kysely';
import { messageId, messageUuid } from '../ids';
import {
  boundedPage,
  type Context,
  decodePageToken,
  decodeTimeIdToken,
  encodePageToken,
  invalid,
  notFound,
  pageLimit,
  rowsOf,
  scopeOf,
  type Timestamp,
  tenantFor,
  timestampField,
  timestampOf,
  timestampToDate,
  uuidField,
} from './common';

/**
 * Messages: Publish (idempotent per tenant), listing messages with their deliveries and the
 * attempts, and sending again (ReplayMessage, RecoverEndpoint). Everything under the caller's
 * identity; the publish trigger queues the deliveries in the same transaction.
 */

/** Event types as the proto states them: letters, digits, '.', '_', '-'; at most 255. */
export const EVENT_TYPE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/;
/** Largest payload_json accepted (the whole body must also fit one gRPC message). */
export const MAX_PAYLOAD_BYTES = 1024 * 1024;
const MAX_KEY_LENGTH = 255;
/** RecoverEndpoint reaches back at most this far (messages are kept at least 15 days). */
export const MAX_RECOVER_MS = 14 * 86_400_000;

const MESSAGE_COLUMNS = sql`m.id, m.tenant_id, m.event_type, m.payload::text as payload, m.idempotency_key, m.created_at`;

/**
 * The JSON body of a message as sent: {"type", "timestamp", "data"} with the payload's text
 * inserted as PostgreSQL returns it, so numbers keep every digit (never parsed here).
 */
export function messageBody(
  eventType: string,
  createdAt: Timestamp | undefined,
  payloadText: string,
): string {
  const timestamp = createdAt ? timestampToDate(createdAt).toISOString() : '';
  return `{"type":${JSON.stringify(eventType)},"timestamp":${JSON.stringify(timestamp)},"data":${payloadText}}`;
}

const STATUS: Readonly<Record<string, webhooks.DeliveryStatus>> = {
  pending: webhooks.DeliveryStatus.DELIVERY_STATUS_PENDING,
  succeeded: webhooks.DeliveryStatus.DELIVERY_STATUS_SUCCEEDED,
  failed: webhooks.DeliveryStatus.DELIVERY_STATUS_FAILED,
};

const OUTCOME: Readonly<Record<string, webhooks.AttemptOutcome>> = {
  succeeded: webhooks.AttemptOutcome.ATTEMPT_OUTCOME_SUCCEEDED,
  http_error: webhooks.AttemptOutcome.ATTEMPT_OUTCOME_HTTP_ERROR,
  timeout: webhooks.AttemptOutcome.ATTEMPT_OUTCOME_TIMEOUT,
  network_error: webhooks.AttemptOutcome.ATTEMPT_OUTCOME_NETWORK_ERROR,
  blocked: webhooks.AttemptOutcome.ATTEMPT_OUTCOME_BLOCKED,
};

function toMessage(row: Record<string, string | null>, deliveries: webhooks.Delivery[]): webhooks.Message {
  const createdAt = timestampOf(row.created_at);
  const eventType = row.event_type ?? '';
  return {
    id: messageId(row.id ?? ''),
    tenantId: row.tenant_id ?? '',
    eventType,
    payloadJson: messageBody(eventType, createdAt, row.payload ?? 'null'),
    idempotencyKey: row.idempotency_key ?? '',
    createdAt,
    deliveries,
  };
}

/** Messages (by uuid) with their deliveries, in the order of `ids`, read in `tx`. */
export async function readMessages(
  tx: RequestTransaction,
  ids: readonly string[],
  endpointId?: string,
): Promise<webhooks.Message[]> {
  if (ids.length === 0) return [];
  const only = endpointId ? sql` and d.endpoint_id = ${endpointId}::uuid` : sql``;
  const [messages, deliveries] = await Promise.all([
    tx.query(
      compile(
        sql`select ${MESSAGE_COLUMNS} from sluice_webhooks.messages m where m.id = any(${ids}::uuid[])`,
      ),
    ),
    tx.query(
      compile(sql`select d.message_id, d.endpoint_id, d.status, d.attempts, d.next_attempt_at
        from sluice_webhooks.deliveries d where d.message_id = any(${ids}::uuid[])${only} order by d.id`),
    ),
  ]);
  const byMessage = new Map<string, webhooks.Delivery[]>();
  for (const d of rowsOf(deliveries)) {
    const list = byMessage.get(d.message_id ?? '') ?? [];
    list.push({
      endpointId: d.endpoint_id ?? '',
      status: STATUS[d.status ?? ''] ?? webhooks.DeliveryStatus.DELIVERY_STATUS_UNSPECIFIED,
      attempts: Number(d.attempts ?? 0),
      nextAttemptAt: d.status === 'pending' ? timestampOf(d.next_attempt_at) : undefined,
    });
    byMessage.set(d.message_id ?? '', list);
  }
  const rows = new Map(rowsOf(messages).map((r) => [r.id ?? '', r]));
  return ids.flatMap((id) => {
    const row = rows.get(id);
    return row ? [toMessage(row, byMessage.get(id) ?? [])] : [];
  });
}

/** A msg_… id (or a plain uuid) in a request. */
export function messageField(value: string, field: string): string {
  if (value === '') throw invalid(field, `${field} is required`, Reason.invalidArgument);
  const id = messageUuid(value);
  if (!id) throw invalid(field, `${field} must be a message id (msg_…)`);
  return id;
}

function checkPayload(text: string): void {
  if (text === '') throw invalid('payload_json', 'a JSON payload is required', Reason.invalidArgument);
  if (Buffer.byteLength(text) > MAX_PAYLOAD_BYTES)
    throw invalid('payload_json', `at most ${MAX_PAYLOAD_BYTES} bytes`);
  try {
    // Only to check it: the text itself goes to PostgreSQL (jsonb keeps numbers exact).
    JSON.parse(text);
  } catch (error) {
    throw invalid('payload_json', `not valid JSON: ${(error as Error).message}`);
  }
}

export function messageHandlers({ db }: { readonly db: Database }) {
  return {
    async publish(req: webhooks.PublishRequest, context: Context): Promise<webhooks.PublishResponse> {
      if (!EVENT_TYPE.test(req.eventType))
        throw invalid(
          'event_type',
          "letters, digits, '.', '_' and '-', starting with a letter or digit, at most 255",
        );
      checkPayload(req.payloadJson);
      if (req.idempotencyKey.length > MAX_KEY_LENGTH)
        throw invalid('idempotency_key', `at most ${MAX_KEY_LENGTH} characters`);
      if (req.orderingKey.length > MAX_KEY_LENGTH)
        throw invalid('ordering_key', `at most ${MAX_KEY_LENGTH} characters`);
      const tenant = tenantFor(context, req.tenantId, 'tenant_id');
      const key = req.idempotencyKey === '' ? null : req.idempotencyKey;
      const traceparent = context.sluice.traceparent ?? null;
      return db.transaction(scopeOf(context, false), async (tx) => {
        // Concurrent calls with one key: the loser waits for the winner's commit, inserts
        // nothing, and reads the winner's message below.
        const inserted = rowsOf(
          await tx.query(
            compile(sql`insert into sluice_webhooks.messages (tenant_id, event_type, payload, idempotency_key, ordering_key, traceparent)
              values (${tenant}::uuid, ${req.eventType}, ${req.payloadJson}::jsonb, ${key}, ${req.orderingKey || null}, ${traceparent})
              on conflict do nothing returning id`),
          ),
        )[0];
        if (inserted?.id) {
          const [message] = await readMessages(tx, [inserted.id]);
          return { message, duplicate: false, deliveries: message?.deliveries.length ?? 0 };
        }
        const existing = rowsOf(
          await tx.query(
            compile(sql`select m.id from sluice_webhooks.messages m
              where coalesce(m.tenant_id, '00000000-0000-0000-0000-000000000000'::uuid)
                    = coalesce(${tenant}::uuid, '00000000-0000-0000-0000-000000000000'::uuid)
                and m.idempotency_key = ${key}`),
          ),
        )[0];
        if (!existing?.id)
          throw new SluiceError('ABORTED', 'The idempotency key is being used concurrently; retry');
        const [message] = await readMessages(tx, [existing.id]);
        return { message, duplicate: true, deliveries: 0 };
      });
    },

    async listMessages(
      req: webhooks.ListMessagesRequest,
      context: Context,
    ): Promise<webhooks.ListMessagesResponse> {
      const limit = pageLimit(req.limit);
      const endpoint = req.endpointId === '' ? undefined : uuidField(req.endpointId, 'endpoint_id');
      if (req.eventType !== '' && !EVENT_TYPE.test(req.eventType))
        throw invalid('event_type', 'not an event type');
      const before = decodeTimeIdToken(req.pageToken);
      const conditions = [sql`true`];
      if (endpoint)
        conditions.push(
          sql`exists (select 1 from sluice_webhooks.deliveries d where d.message_id = m.id and d.endpoint_id = ${endpoint}::uuid)`,
        );
      if (req.eventType !== '') conditions.push(sql`m.event_type = ${req.eventType}`);
      if (req.since) conditions.push(sql`m.created_at >= ${timestampField(req.since, 'since')}::timestamptz`);
      if (before)
        conditions.push(sql`(m.created_at, m.id) < (${before[0]}::timestamptz, ${before[1]}::uuid)`);
      // Newest first.
      return db.transaction(scopeOf(context, true), async (tx) => {
        // The payloads' sizes first: only the messages that fit a page are read.
        const rows = rowsOf(
          await tx.query(
            compile(sql`select m.id, m.created_at, octet_length(m.payload::text) as bytes from sluice_webhooks.messages m
              where ${sql.join(conditions, sql` and `)}
              order by m.created_at desc, m.id desc limit ${limit + 1}`),
          ),
        );
        const { page, more } = boundedPage(rows, limit, (r) => Number(r.bytes ?? 0));
        const last = page[page.length - 1];
        return {
          messages: await readMessages(
            tx,
            page.map((r) => r.id ?? ''),
            endpoint,
          ),
          nextPageToken: more && last ? encodePageToken([last.created_at ?? '', last.id ?? '']) : '',
        };
      });
    },

    async listAttempts(
      req: webhooks.ListAttemptsRequest,
      context: Context,
    ): Promise<webhooks.ListAttemptsResponse> {
      const limit = pageLimit(req.limit);
      const message = req.messageId === '' ? undefined : messageField(req.messageId, 'message_id');
      const endpoint = req.endpointId === '' ? undefined : uuidField(req.endpointId, 'endpoint_id');
      const after = decodePageToken(req.pageToken, 1);
      if (after && !/^\d{1,19}$/.test(after[0] ?? ''))
        throw invalid('page_token', 'The page token is malformed', Reason.invalidPageToken);
      const conditions = [sql`true`];
      if (message) conditions.push(sql`a.message_id = ${message}::uuid`);
      if (endpoint) conditions.push(sql`a.endpoint_id = ${endpoint}::uuid`);
      if (after) conditions.push(sql`a.id > ${after[0]}::bigint`);
      const [result] = await db.run(scopeOf(context, true), [
        compile(sql`select a.id, a.message_id, a.endpoint_id, a.attempt, a.started_at, a.duration_ms, a.status_code,
                 a.outcome, a.error, a.response_body
            from sluice_webhooks.attempts a where ${sql.join(conditions, sql` and `)}
           order by a.id limit ${limit + 1}`),
      ]);
      const rows = rowsOf(result);
      const { page, more } = boundedPage(
        rows,
        limit,
        (a) => Buffer.byteLength(a.response_body ?? '') + Buffer.byteLength(a.error ?? ''),
      );
      const last = page[page.length - 1];
      return {
        attempts: page.map((a) => ({
          id: a.id ?? '',
          messageId: messageId(a.message_id ?? ''),
          endpointId: a.endpoint_id ?? '',
          attempt: Number(a.attempt ?? 0),
          startedAt: timestampOf(a.started_at),
          durationMs: Number(a.duration_ms ?? 0),
          statusCode: Number(a.status_code ?? 0),
          outcome: OUTCOME[a.outcome ?? ''] ?? webhooks.AttemptOutcome.ATTEMPT_OUTCOME_UNSPECIFIED,
          error: a.error ?? '',
          responseBody: a.response_body ?? '',
        })),
        nextPageToken: more && last ? encodePageToken([last.id ?? '']) : '',
      };
    },

    async replayMessage(
      req: webhooks.ReplayMessageRequest,
      context: Context,
    ): Promise<webhooks.ReplayMessageResponse> {
      const message = messageField(req.messageId, 'message_id');
      const endpoint = req.endpointId === '' ? undefined : uuidField(req.endpointId, 'endpoint_id');
      const only = endpoint ? sql` and d.endpoint_id = ${endpoint}::uuid` : sql``;
      return db.transaction(scopeOf(context, false), async (tx) => {
        const found = rowsOf(
          await tx.query(
            compile(sql`select 1 as one from sluice_webhooks.messages m where m.id = ${message}::uuid`),
          ),
        );
        if (found.length === 0) throw notFound('message', req.messageId);
        // Every delivery of it (to that endpoint), whatever its state: due again now, same
        // message and webhook-id. One in flight is sent again after its attempt too.
        const updated = await tx.query(
          compile(sql`update sluice_webhooks.deliveries d set status = 'pending', next_attempt_at = now(), updated_at = now()
            where d.message_id = ${message}::uuid${only}`),
        );
        if (endpoint && updated.rowCount === 0)
          throw notFound('delivery of that message to endpoint', endpoint);
        return { deliveries: updated.rowCount };
      });
    },

    async recoverEndpoint(
      req: webhooks.RecoverEndpointRequest,
      context: Context,
    ): Promise<webhooks.RecoverEndpointResponse> {
      const endpoint = uuidField(req.endpointId, 'endpoint_id');
      if (!req.since) throw invalid('since', 'since is required', Reason.invalidArgument);
      const sinceText = timestampField(req.since, 'since');
      const since = timestampToDate(req.since);
      if (Number.isNaN(since.getTime()) || Date.now() - since.getTime() > MAX_RECOVER_MS)
        throw invalid('since', 'at most 14 days ago');
      return db.transaction(scopeOf(context, false), async (tx) => {
        const enabled = await tx.query(
          compile(sql`update sluice_webhooks.endpoints
               set enabled = true, disabled_reason = null, failing_since = null, updated_at = now()
             where id = ${endpoint}::uuid`),
        );
        if (enabled.rowCount === 0) throw notFound('endpoint', endpoint);
        const updated = await tx.query(
          compile(sql`update sluice_webhooks.deliveries d set status = 'pending', next_attempt_at = now(), updated_at = now()
            where d.endpoint_id = ${endpoint}::uuid and d.status = 'failed'
              and d.created_at >= ${sinceText}::timestamptz`),
        );
        return { deliveries: updated.rowCount };
      });
    },
  };
}
