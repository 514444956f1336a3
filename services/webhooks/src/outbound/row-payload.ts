import { startSqlSpan, trackSqlSpan } from '@sluice/observability';
import type pg from 'pg';
import { formatChangePosition } from '../change-position';
import type { Wanted } from './fanout-match';

/**
 * Row-change messages and their deliveries, written in one statement per batch.
 *
 * The payload (messages.payload, the `data` of the webhook body) is the Supabase
 * database-webhook shape plus where the change stands in the log:
 *
 *   {"type": "INSERT" | "UPDATE" | "DELETE", "schema": "public", "table": "posts",
 *    "record": {...} | null, "old_record": {...} | null,
 *    "position": "<window>:<id>", "commit_timestamp": "2026-11-27T09:36:08.123456Z"}
 *
 * It is built in PostgreSQL from the change log's jsonb (to_jsonb of the row, what Supabase
 * sends), so values keep their exact digits and text: nothing is parsed and printed again in
 * JavaScript. What the endpoint's owner may see:
 * - `record` (INSERT, UPDATE): the columns the owner may SELECT (column privileges), every one
 *   of them present (a json column that was SQL NULL, which the log leaves out, is null). The
 *   privilege is checked again here, in the writing statement: the compiled selection follows
 *   the schema catalog, which reloads a moment after a REVOKE, and a change written in that
 *   moment carried the revoked column (a role dropped meanwhile sees none, rather than failing
 *   the batch);
 * - `old_record`: the old row in full for a service_role owner only; under RLS the old version
 *   is not checked, so an UPDATE carries null and a DELETE the primary key columns only (the
 *   events service's rule: the deleted version passed the RLS check, its key identifies it);
 * - `record` of a DELETE is null, as in Supabase's payload.
 * `commit_timestamp` is the writing transaction's start time in UTC (the change log's
 * committed_at: close to the commit and never later).
 *
 * event_type is "row.inserted", "row.updated" or "row.deleted" (schema and table are in the
 * payload; table names need not fit the event type's characters).
 *
 * ordering_key is "<schema>.<table>:<primary key as JSON>"; the delivery's fifo_key is that key
 * for ordering 'key', the row's tenant (change_log.tenant_id, else the endpoint's, else '') for
 * ordering 'tenant', none otherwise. Deliveries are inserted in the batch's order, so their ids
 * follow change positions per endpoint (the FIFO order).
 *
 * `on conflict do nothing` on (endpoint_id, change_position): a batch fanned out twice (it
 * cannot be while the position row is locked, but a second guard costs nothing) creates nothing
 * twice; a message not created then gets no second delivery.
 */
const INSERT_SQL = `
with shapes as (
  -- Each distinct payload once (a change fans out to many endpoints that see the same columns).
  select s.shape, s.change_id, s.position, s.columns, s.full_old, s.role
    from rows from (pg_catalog.unnest($1::bigint[]), pg_catalog.unnest($2::text[]),
                    pg_catalog.unnest($3::jsonb[]), pg_catalog.unnest($4::boolean[]),
                    pg_catalog.unnest($7::text[]))
           with ordinality as s(change_id, position, columns, full_old, role, shape)
), payloads as (
  select s.shape, s.position, c.tenant_id as row_tenant, c.trace_id,
         c.schema || '.' || c."table" || ':' || c.pk::text as ordering_key,
         case c.op when 'INSERT' then 'row.inserted' when 'UPDATE' then 'row.updated' else 'row.deleted' end as event_type,
         pg_catalog.jsonb_build_object(
           'type', c.op,
           'schema', c.schema,
           'table', c."table",
           'record', case when c.op <> 'DELETE' then
             (select pg_catalog.jsonb_object_agg(k.key, coalesce(c.record -> k.key, 'null'::jsonb))
                from pg_catalog.jsonb_object_keys(s.columns) as k(key)
               where s.role is null or exists (
                 select 1 from pg_catalog.pg_attribute a
                  where a.attrelid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', c.schema, c."table"))
                    and a.attname = k.key and not a.attisdropped
                    and pg_catalog.has_column_privilege(pg_catalog.to_regrole(pg_catalog.quote_ident(s.role)), a.attrelid, a.attnum, 'SELECT'))) end,
           'old_record', case
             when c.op = 'INSERT' then null
             when s.full_old then
               (select pg_catalog.jsonb_object_agg(k.key, coalesce(c.old_record -> k.key, 'null'::jsonb))
                  from pg_catalog.jsonb_object_keys(s.columns) as k(key))
             when c.op = 'DELETE' then c.pk
           end,
           'position', s.position,
           'commit_timestamp', pg_catalog.to_char(c.committed_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
         ) as payload
    from shapes s
    join sluice.change_log c on c.id = s.change_id
), rows as (
  select w.n, w.endpoint_id, e.tenant_id, e.ordering, p.*
    from rows from (pg_catalog.unnest($5::uuid[]), pg_catalog.unnest($6::integer[]))
           with ordinality as w(endpoint_id, shape, n)
    join payloads p on p.shape = w.shape
    join sluice_webhooks.endpoints e on e.id = w.endpoint_id
), messages as (
  insert into sluice_webhooks.messages
    (tenant_id, event_type, payload, ordering_key, endpoint_id, change_position, traceparent)
  select r.tenant_id, r.event_type, r.payload, r.ordering_key, r.endpoint_id, r.position,
         case when r.trace_id ~ '^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$' then r.trace_id end
    from rows r
   order by r.n
  on conflict (endpoint_id, change_position) where change_position is not null do nothing
  returning id, endpoint_id, change_position
)
insert into sluice_webhooks.deliveries (message_id, endpoint_id, tenant_id, fifo_key)
select m.id, m.endpoint_id, r.tenant_id,
       case r.ordering
         when 'key' then r.ordering_key
         when 'tenant' then coalesce(r.row_tenant, r.tenant_id::text, '')
       end
  from messages m
  join rows r on r.endpoint_id = m.endpoint_id and r.position = m.change_position
 order by r.n`;

/**
 * Writes the messages and deliveries of `wanted` (in its order) on `client`, inside the caller's
 * transaction. Returns the number of messages created.
 */
export async function insertRowMessages(client: pg.ClientBase, wanted: readonly Wanted[]): Promise<number> {
  if (wanted.length === 0) return 0;
  const shapeOf = new Map<string, number>();
  const changeIds: string[] = [];
  const positions: string[] = [];
  const columns: string[] = [];
  const fullOld: boolean[] = [];
  /** The owner's role whose column privileges are checked again; null for service_role. */
  const roles: (string | null)[] = [];
  const endpoints: string[] = [];
  const shapes: number[] = [];
  for (const w of wanted) {
    const id = w.change.position.id.toString();
    const role = w.endpoint.bypassesRls ? null : w.endpoint.identity.role;
    const key = `${id}|${role ?? ''}|${w.selection.columns}`;
    let shape = shapeOf.get(key);
    if (shape === undefined) {
      changeIds.push(id);
      positions.push(formatChangePosition(w.change.position));
      columns.push(w.selection.columns);
      fullOld.push(w.endpoint.bypassesRls);
      roles.push(role);
      shape = changeIds.length;
      shapeOf.set(key, shape);
    }
    endpoints.push(w.endpoint.id);
    shapes.push(shape);
  }
  // A CLIENT span like the Database's statements, beneath the fan-out's batch span.
  const result = await trackSqlSpan(
    startSqlSpan(INSERT_SQL),
    client.query(INSERT_SQL, [changeIds, positions, columns, fullOld, endpoints, shapes, roles]),
  );
  return result.rowCount ?? 0;
}
