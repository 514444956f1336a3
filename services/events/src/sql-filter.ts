import type { Change } from '@sluice/changes';
import type { Identity } from '@sluice/core';
import { type CatalogTable, compile, type Database } from '@sluice/db';
import { type RawBuilder, sql } from 'kysely';

/**
 * A subscription filter memory cannot decide exactly (see RowMatcher.exact), asked of
 * PostgreSQL: the data service's own SQL for the filter (compileFilter), applied to the
 * versions the changes carry, rebuilt from their text values — so a live filter selects what
 * Select and the snapshot select, collation and all.
 */
export interface SqlFilterCheck {
  readonly identity: Identity;
  readonly table: CatalogTable;
  /** compileFilter's expression over the table's columns. */
  readonly where: RawBuilder<unknown>;
  /** Checks with the same filter text and table share one query (e.g. a JSON of the request's filter). */
  readonly key: string;
  readonly changes: readonly Change[];
  /** Filled in: the changes whose version matches. */
  matched?: Set<Change>;
  /** Set when this check's query failed (the other checks were still answered). */
  error?: unknown;
}

/**
 * Evaluates the checks, one query per distinct (role, table, filter), each in a rolled-back
 * read-only transaction under the first subscriber's identity (filters read no table, but run
 * with the caller's privileges as in a Select).
 *
 * Cancellation: `signal` cancels the queries (and then this throws). A failed query marks its
 * checks' `error`; the caller ends those streams only.
 */
export async function matchInDatabase(
  db: Database,
  checks: readonly SqlFilterCheck[],
  signal: AbortSignal,
): Promise<void> {
  const groups = new Map<string, SqlFilterCheck[]>();
  for (const check of checks) {
    check.matched = new Set();
    const key = `${check.identity.role}\u0000${check.table.oid}\u0000${check.key}`;
    const group = groups.get(key);
    if (group) group.push(check);
    else groups.set(key, [check]);
  }
  for (const group of groups.values()) {
    const first = group[0] as SqlFilterCheck;
    const changes = [...new Set(group.flatMap((c) => c.changes))];
    if (changes.length === 0) continue;
    let matched: Set<Change>;
    try {
      matched = await db.transaction(
        { identity: first.identity, readOnly: true, signal, deadline: undefined },
        async (tx) => {
          const result = await tx.query(compile(versionsWhere(first.table, changes, first.where)));
          return new Set(result.rows.map((r) => changes[Number(r[0]) - 1] as Change));
        },
        { rollback: true },
      );
    } catch (error) {
      if (signal.aborted) throw error;
      for (const check of group) check.error = error;
      continue;
    }
    for (const check of group)
      for (const change of check.changes) if (matched.has(change)) check.matched?.add(change);
  }
}

/**
 * `select n from (<the versions as rows of table>) where <where>`: each version rebuilt from its
 * text values with casts to the catalog's types, under the table's name so the filter's column
 * references resolve to it.
 */
function versionsWhere(table: CatalogTable, changes: readonly Change[], where: RawBuilder<unknown>) {
  const fields = (changes[0] as Change).fields;
  const index = new Map(fields.map((f, i) => [f.name, i + 1]));
  const records = changes.map((c) => {
    if (c.fields !== fields) throw new Error('changes of one table decoded with different columns');
    return c.record;
  });
  const columns = table.columns.map((c) => {
    const i = index.get(c.name);
    // typeSql and collateSql come from the catalog, never from a request.
    const value = i === undefined ? sql`null` : sql`p."sluice records"[w.n][${sql.lit(i)}]`;
    // The column's collation too: a filter compares text as the column does.
    const collate = c.collateSql === null ? sql`` : sql` collate ${sql.raw(c.collateSql)}`;
    return sql`${value}::${sql.raw(c.typeSql)}${collate} as ${sql.id(c.name)}`;
  });
  return sql`select ${sql.id(table.name)}."sluice record"
    from (select w.n as "sluice record", ${sql.join(columns)}
            from (select ${sql.val(records)}::text[] as "sluice records") as p
            cross join pg_catalog.unnest(${sql.val(changes.map((_, i) => i + 1))}::integer[]) as w(n)) as ${sql.id(table.name)}
   where ${where}`;
}
