import type { Change } from '@sluice/changes';
import type { Identity } from '@sluice/core';
import {
  type CatalogTable,
  compile,
  type Database,
  type RequestTransaction,
  type StatementResult,
} from '@sluice/db';
import { sql } from 'kysely';

/** "Which of these rows may this identity SELECT now?" for one table. */
export interface VisibilityCheck {
  readonly identity: Identity;
  readonly table: CatalogTable;
  readonly changes: readonly Change[];
  /** Filled in: the primary keys (see keyOf) the identity can see. */
  visible?: Set<string>;
}

/** A change's primary key as one string (JSON of the key columns' text values, in key order). */
export function keyOf(table: CatalogTable, pk: Readonly<Record<string, string | null>>): string {
  return JSON.stringify(table.primaryKey.map((c) => pk[c] ?? null));
}

/**
 * Runs visibility checks in batches, as DESIGN.md asks: never a query per change per subscriber.
 * Checks are grouped by role into one transaction each; inside it, each identity's claims are set
 * once and each of its tables is asked once, `where pk = any($keys)` — so RLS decides with the
 * subscriber's own role and claims. All statements of a role go out pipelined.
 */
export async function checkVisibility(
  db: Database,
  checks: readonly VisibilityCheck[],
  signal: AbortSignal,
): Promise<void> {
  const byRole = new Map<string, VisibilityCheck[]>();
  for (const check of checks) {
    const list = byRole.get(check.identity.role);
    if (list) list.push(check);
    else byRole.set(check.identity.role, [check]);
  }
  await Promise.all(
    [...byRole.values()].map(async (group) => {
      const first = group[0] as VisibilityCheck;
      await db.transaction(
        { identity: first.identity, readOnly: true, signal, deadline: undefined },
        async (tx) => {
          let claims = JSON.stringify(first.identity.claims);
          const pending: Promise<unknown>[] = [];
          for (const check of group) {
            const next = JSON.stringify(check.identity.claims);
            if (next !== claims) {
              claims = next;
              pending.push(
                tx.query(compile(sql`select set_config('request.jwt.claims', ${sql.val(claims)}, true)`)),
              );
            }
            pending.push(lookup(tx, check));
          }
          await Promise.all(pending);
        },
        { rollback: true },
      );
    }),
  );
}

async function lookup(tx: RequestTransaction, check: VisibilityCheck): Promise<void> {
  const { table } = check;
  const keyColumns = table.primaryKey.map((name) => table.columnsByName.get(name));
  const arrays = keyColumns.map(
    (column, i) =>
      sql`${sql.val(check.changes.map((c) => c.pk[table.primaryKey[i] as string] ?? null))}::${sql.raw(column?.typeSql ?? 'text')}[]`,
  );
  const ids = sql.join(table.primaryKey.map((c) => sql.id(c)));
  const statement =
    keyColumns.length === 1
      ? sql`select ${ids} from ${sql.id(table.schema, table.name)} where ${ids} = any(${arrays[0]})`
      : sql`select ${ids} from ${sql.id(table.schema, table.name)} where (${ids}) in (select * from unnest(${sql.join(arrays)}))`;
  const result: StatementResult = await tx.query(compile(statement));
  check.visible = new Set(result.rows.map((row) => JSON.stringify(row.map((v) => v ?? null))));
}
