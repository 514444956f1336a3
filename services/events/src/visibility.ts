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

const keys = new WeakMap<object, string>();

/** A change's primary key as one string (JSON of the key columns' text values, in key order). */
export function keyOf(table: CatalogTable, pk: Readonly<Record<string, string | null>>): string {
  let key = keys.get(pk);
  if (key === undefined) {
    key = JSON.stringify(table.primaryKey.map((c) => pk[c] ?? null));
    keys.set(pk, key);
  }
  return key;
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
  parallelism = 1,
): Promise<void> {
  const byRole = new Map<string, VisibilityCheck[]>();
  for (const check of checks) {
    const list = byRole.get(check.identity.role);
    if (list) list.push(check);
    else byRole.set(check.identity.role, [check]);
  }
  // Many identities of one role are split over several transactions (connections), so
  // PostgreSQL works on them in parallel instead of one backend running them all in turn.
  const groups: VisibilityCheck[][] = [];
  for (const list of byRole.values()) {
    const size = Math.max(1, Math.ceil(list.length / parallelism));
    for (let i = 0; i < list.length; i += size) groups.push(list.slice(i, i + size));
  }
  await Promise.all(
    groups.map(async (group) => {
      const first = group[0] as VisibilityCheck;
      await db.transaction(
        { identity: first.identity, readOnly: true, signal, deadline: undefined },
        async (tx) => {
          const single = new Map<CatalogTable, VisibilityCheck[]>();
          const composite: VisibilityCheck[] = [];
          for (const check of group) {
            if (check.table.primaryKey.length !== 1) composite.push(check);
            else {
              const list = single.get(check.table);
              if (list) list.push(check);
              else single.set(check.table, [check]);
            }
          }
          const pending: Promise<unknown>[] = [...single].map(([table, checks]) =>
            lookupMany(tx, table, checks),
          );
          // Composite keys (rare): one claims statement and one lookup per identity, pipelined.
          let claims = JSON.stringify(first.identity.claims);
          for (const check of composite) {
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

/**
 * Every identity of `checks` against one table with a single-column key, in one statement:
 * sluice.visible_keys loops over the claims inside PostgreSQL (see the core migration).
 * Each identity is asked about the union of the keys; it only ever looks at its own.
 */
async function lookupMany(
  tx: RequestTransaction,
  table: CatalogTable,
  checks: readonly VisibilityCheck[],
): Promise<void> {
  const keyName = table.primaryKey[0] as string;
  const keyColumn = table.columnsByName.get(keyName);
  const keys = new Set<string>();
  for (const check of checks) for (const change of check.changes) keys.add(change.pk[keyName] ?? '');
  const statement = sql`select claim_index, key from sluice.visible_keys(${sql.val(
    checks.map((c) => JSON.stringify(c.identity.claims)),
  )}::text[], ${sql.val(`${quoteIdent(table.schema)}.${quoteIdent(table.name)}`)}::regclass, ${sql.val(keyName)}, ${sql.val(
    keyColumn?.typeSql ?? 'text',
  )}::regtype, ${sql.val([...keys])}::text[])`;
  for (const check of checks) check.visible = new Set();
  const result = await tx.query(compile(statement));
  for (const [index, key] of result.rows) {
    checks[Number(index) - 1]?.visible?.add(JSON.stringify([key]));
  }
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
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
