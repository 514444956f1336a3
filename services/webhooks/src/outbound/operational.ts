import type pg from 'pg';
import type { Logger } from 'pino';
import { endpointEventsTotal } from './metrics';

/**
 * Operational events of outbound endpoints. Each is logged, counted
 * (webhooks_endpoint_events_total{event}) and stored as an inbound event of the built-in source
 * 'sluice-operational', in the endpoint's tenant, so consumers receive them like any webhook:
 *
 * | event     | event_type            | when                                                       |
 * | --------- | --------------------- | ---------------------------------------------------------- |
 * | failing   | endpoint.failing      | once per failing period (failing_since: the first failed attempt after a success), when one of its deliveries fails its 4th attempt or for good |
 * | exhausted | message.exhausted     | a delivery failed for good (schedule exhausted, or blocked) |
 * | disabled  | endpoint.disabled     | 410 Gone (reason gone) or failing too long (reason failing)  |
 * | recovered | endpoint.recovered    | the first success after a failing period that was reported |
 *
 * An endpoint failing now and then (a 500 retried successfully) is not reported: like Svix's
 * "failing" after the 4th attempt, the event means deliveries are really in trouble.
 *
 * The body is JSON: {"type", "endpoint_id", "timestamp", …the fields below}. The external id
 * (the dedupe key) is `<event>:<endpoint id>:<what makes it unique>` — for failing and
 * recovered, failing_since in microseconds since the epoch — so each is stored once.
 */
export type OperationalEventName = 'failing' | 'exhausted' | 'disabled' | 'recovered';

export interface OperationalEvent {
  readonly event: OperationalEventName;
  readonly endpointId: string;
  readonly tenantId: string | null;
  /** What makes this occurrence unique for the endpoint: a time (failing since…) or a delivery id. */
  readonly occurrence: string;
  /** More fields of the body (reason, message_id, delivery_id, attempts, failing_since…). */
  readonly details: Readonly<Record<string, unknown>>;
}

export const OPERATIONAL_SOURCE = 'sluice-operational';

const EVENT_TYPES: Record<OperationalEventName, string> = {
  failing: 'endpoint.failing',
  exhausted: 'message.exhausted',
  disabled: 'endpoint.disabled',
  recovered: 'endpoint.recovered',
};

/**
 * Stores `event` in the inbox through `client`, so it commits with the change that caused it.
 * Returns false when it was stored before (same external id): nothing to announce then. Once
 * committed, announceOperationalEvents logs and counts the stored ones.
 */
export async function storeOperationalEvent(
  client: pg.ClientBase,
  event: OperationalEvent,
): Promise<boolean> {
  const type = EVENT_TYPES[event.event];
  const body = JSON.stringify({
    type,
    endpoint_id: event.endpointId,
    timestamp: new Date().toISOString(),
    ...event.details,
  });
  const { rowCount } = await client.query(
    `insert into sluice_webhooks.inbox (source_id, tenant_id, external_id, event_type, headers, body)
     select s.id, $2, $3, $4, '{}', convert_to($5, 'UTF8')
       from sluice_webhooks.sources s where s.name = $1
     on conflict (source_id, external_id) do nothing`,
    [
      OPERATIONAL_SOURCE,
      event.tenantId,
      `${event.event}:${event.endpointId}:${event.occurrence}`,
      type,
      body,
    ],
  );
  return (rowCount ?? 0) > 0;
}

/** Logs and counts events whose transaction committed. */
export function announceOperationalEvents(logger: Logger, events: readonly OperationalEvent[]): void {
  for (const e of events) {
    endpointEventsTotal.inc({ event: e.event });
    const fields = { endpointId: e.endpointId, tenantId: e.tenantId, event: e.event, ...e.details };
    if (e.event === 'recovered') logger.info(fields, `webhook endpoint ${e.event}`);
    else logger.warn(fields, `webhook endpoint ${e.event}`);
  }
}
