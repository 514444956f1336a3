import type pg from 'pg';

// The planner's own estimate, scaled to the table's size now: cheap at any size and it follows
// growth between ANALYZE runs. A table never analyzed (reltuples -1, or no pages yet) is new and
// small, so it is counted.
const ESTIMATE_SQL = `
  select (case
    when c.reltuples < 0 or c.relpages = 0 then (select count(*) from sluice.change_log)
    else c.reltuples / c.relpages * (pg_relation_size(c.oid) / current_setting('block_size')::int)
  end)::bigint::text as rows
  from pg_class c
  where c.oid = 'sluice.change_log'::regclass`;

/** About how many rows the change log holds (for the events_change_log_rows metric). */
export async function estimateChangeLogRows(pool: pg.Pool): Promise<number> {
  const { rows } = await pool.query<{ rows: string }>(ESTIMATE_SQL);
  return Number(rows[0]?.rows ?? 0);
}
