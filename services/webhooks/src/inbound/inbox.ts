import type pg from 'pg';
import type { ReceivedEvent } from './receive';
import type { InboundSource } from './sources';

export interface StoredEvent {
  /** inbox.id, as text (bigint). */
  readonly id: string;
  /** True when (source, external id) was stored before: nothing was written this time. */
  readonly duplicate: boolean;
}

// One statement, so one commit: the event is stored whole or not at all. ON CONFLICT makes a
// duplicate wait for a concurrent first copy (on any instance) to commit, then do nothing. The
// second branch reads the first copy's id when it was committed before this statement began.
const INSERT_SQL = `
with inserted as (
  insert into sluice_webhooks.inbox (source_id, tenant_id, external_id, event_type, headers, body, change, traceparent)
  values ($1, $2, $3, $4, $5::jsonb, $6, $7::jsonb, $8)
  on conflict (source_id, external_id) do nothing
  returning id
)
select id::text, false as duplicate from inserted
union all
select id::text, true from sluice_webhooks.inbox
 where source_id = $1 and external_id = $3 and not exists (select from inserted)`;

// A copy committed while the insert above waited is not in that statement's snapshot: a new
// statement sees it.
const EXISTING_SQL = 'select id::text from sluice_webhooks.inbox where source_id = $1 and external_id = $2';

/**
 * Stores a verified event in the inbox, once per (source, external id). Resolves only after
 * the row is committed (the statement runs outside any transaction), so a 2xx sent after it is
 * durable.
 *
 * @throws the pool's error (connection failures and timeouts: the caller answers 503).
 */
export async function storeEvent(
  pool: pg.Pool,
  source: InboundSource,
  event: ReceivedEvent,
  body: Buffer,
): Promise<StoredEvent> {
  // Retention may delete the first copy between the two statements: then insert again.
  for (let attempt = 0; ; attempt++) {
    const { rows } = await pool.query<{ id: string; duplicate: string | boolean }>({
      text: INSERT_SQL,
      values: [
        source.id,
        source.tenantId,
        event.externalId,
        event.eventType,
        JSON.stringify(event.headers),
        body,
        event.change === null ? null : JSON.stringify(event.change),
        event.traceparent,
      ],
    });
    const row = rows[0];
    if (row) return { id: row.id, duplicate: row.duplicate === true || row.duplicate === 't' };
    const existing = await pool.query<{ id: string }>({
      text: EXISTING_SQL,
      values: [source.id, event.externalId],
    });
    if (existing.rows[0]) return { id: existing.rows[0].id, duplicate: true };
    if (attempt >= 2) throw new Error('inbox: the event was neither inserted nor found');
  }
}
