import type pg from 'pg';
import type { Logger } from 'pino';
import type { InboundSettings, OutboundSettings } from './config';

export interface RetentionDeps {
  readonly pool: pg.Pool;
  readonly logger: Logger;
  readonly inbound: InboundSettings;
  readonly outbound: OutboundSettings;
}

// Deleted per statement, so one run never holds long locks or a huge transaction.
const BATCH = 5000;

/**
 * Deletes inbound events older than the inbox retention (their dedupe keys go with them) and
 * finished messages older than the message retention (their deliveries and attempts cascade).
 * Messages with a delivery still pending are kept whatever their age: nothing queued is lost.
 * Returns the stop function.
 */
export function startRetention({ pool, logger, inbound, outbound }: RetentionDeps): () => void {
  let running = false;
  const run = async () => {
    if (running) return;
    running = true;
    try {
      const inboxDeleted = await deleteInBatches(
        pool,
        `delete from sluice_webhooks.inbox where id in (
           select id from sluice_webhooks.inbox where received_at < now() - $1::bigint * interval '1 millisecond'
           limit ${BATCH})`,
        inbound.retentionMs,
      );
      const messagesDeleted = await deleteInBatches(
        pool,
        `delete from sluice_webhooks.messages m where m.id in (
           select id from sluice_webhooks.messages
            where created_at < now() - $1::bigint * interval '1 millisecond'
              and not exists (select 1 from sluice_webhooks.deliveries d
                               where d.message_id = messages.id and d.status = 'pending')
            limit ${BATCH})`,
        outbound.retentionMs,
      );
      if (inboxDeleted + messagesDeleted > 0)
        logger.info({ inboxDeleted, messagesDeleted }, 'webhooks retention');
    } catch (err) {
      logger.error({ err }, 'webhooks retention failed');
    } finally {
      running = false;
    }
  };
  const timer = setInterval(() => void run(), inbound.retentionIntervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

async function deleteInBatches(pool: pg.Pool, sql: string, ageMs: number): Promise<number> {
  let total = 0;
  for (;;) {
    const { rowCount } = await pool.query(sql, [ageMs]);
    total += rowCount ?? 0;
    if ((rowCount ?? 0) < BATCH) return total;
  }
}
