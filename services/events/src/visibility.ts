import type { Change } from '@sluice/changes';
import type { Identity } from '@sluice/core';
import type { CatalogTable, Database, RequestTransaction } from '@sluice/db';

/**
 * "Which of these row versions may this identity SELECT?" for one table. The version of a
 * change is the row it carries: the new row of an INSERT or UPDATE, the last row of a DELETE.
 */
export interface VisibilityCheck {
  readonly identity: Identity;
  readonly table: CatalogTable;
  readonly changes: readonly Change[];
  /** Filled in: the changes whose version the identity may see. */
  visible?: Set<Change>;
  /** Set when this check could not be answered (the others still were). */
  error?: unknown;
}

/** Identities of one role that ask one table about the same versions with the same claims: asked once. */
interface Lookup {
  readonly table: CatalogTable;
  readonly claims: string;
  readonly changes: readonly Change[];
  readonly checks: VisibilityCheck[];
}

/**
 * Runs visibility checks in batches, as docs/design.md asks: never a query per change per
 * subscriber. Checks are grouped by role into transactions, identities with the same claims
 * and changes merged; inside a transaction each table is asked once, through
 * sluice.visible_versions_<table oid> (core migration 000006, created by sluice.enable_changes):
 * the table's SELECT policies applied to each logged version under each claims document, with
 * the subscriber's own role — what a Select of that version would have answered.
 *
 * A check made from policies that have changed since refuses to answer; the tables' checks are
 * then brought up to date (sluice.refresh_version_check) and asked once more.
 */
export async function checkVisibility(
  db: Database,
  checks: readonly VisibilityCheck[],
  signal: AbortSignal,
  parallelism = 1,
): Promise<void> {
  try {
    await checkOnce(db, checks, signal, parallelism);
  } catch (error) {
    if (!isStaleCheck(error)) throw error;
    const tables = new Set(checks.map((c) => c.table));
    for (const table of tables) {
      await db.pool.query('select sluice.refresh_version_check($1::regclass)', [qualifiedName(table)]);
    }
    await checkOnce(db, checks, signal, parallelism);
  }
}

async function checkOnce(
  db: Database,
  checks: readonly VisibilityCheck[],
  signal: AbortSignal,
  parallelism: number,
): Promise<void> {
  // role -> table -> changes -> claims -> lookup; subscribers with the same filters want the
  // same change list (the same array when it comes from the same subscription shape).
  const byRole = new Map<string, Map<CatalogTable, Map<readonly Change[], Map<string, Lookup>>>>();
  const lists: (readonly Change[])[] = [];
  for (const check of checks) {
    check.visible = new Set();
    check.error = undefined;
    if (check.changes.length === 0) continue;
    const changes = sharedList(lists, check.changes);
    const byClaims = entry(entry(entry(byRole, check.identity.role), check.table), changes);
    const claims = claimsOf(check.identity);
    const lookup = byClaims.get(claims);
    if (lookup) lookup.checks.push(check);
    else byClaims.set(claims, { table: check.table, claims, changes, checks: [check] });
  }
  // Many identities of one role are split over several transactions (connections), so
  // PostgreSQL works on them in parallel instead of one backend running them all in turn.
  const groups: Lookup[][] = [];
  for (const byTable of byRole.values()) {
    const list: Lookup[] = [];
    for (const byChanges of byTable.values())
      for (const byClaims of byChanges.values()) for (const lookup of byClaims.values()) list.push(lookup);
    const size = Math.max(1, Math.ceil(list.length / parallelism));
    for (let i = 0; i < list.length; i += size) groups.push(list.slice(i, i + size));
  }
  await Promise.all(
    groups.map(async (lookups) => {
      try {
        await lookupGroup(db, lookups, signal);
      } catch (error) {
        if (signal.aborted || isStaleCheck(error)) throw error;
        // One role's or one table's failure (a policy calling a function the role may not
        // execute, say) must not end anybody else's stream: retry table by table, and mark
        // only the checks that still fail.
        const tables = [...new Set(lookups.map((l) => l.table))];
        for (const table of tables) {
          const mine = lookups.filter((l) => l.table === table);
          const failed =
            tables.length === 1
              ? error
              : await lookupGroup(db, mine, signal).then(
                  () => undefined,
                  (e) => e,
                );
          if (failed === undefined) continue;
          if (signal.aborted || isStaleCheck(failed)) throw failed;
          for (const lookup of mine) for (const check of lookup.checks) check.error = failed;
        }
      }
    }),
  );
}

/** The lookups of one role, in one read-only transaction under that role (one statement per table). */
function lookupGroup(db: Database, lookups: Lookup[], signal: AbortSignal): Promise<void> {
  return db.transaction(
    {
      identity: ((lookups[0] as Lookup).checks[0] as VisibilityCheck).identity,
      readOnly: true,
      signal,
      deadline: undefined,
    },
    async (tx) => {
      const pending: Promise<void>[] = [];
      for (let start = 0; start < lookups.length; ) {
        const table = (lookups[start] as Lookup).table;
        let end = start + 1;
        while (end < lookups.length && lookups[end]?.table === table) end++;
        pending.push(lookupTable(tx, table, lookups.slice(start, end)));
        start = end;
      }
      await Promise.all(pending);
    },
    { rollback: true },
  );
}

/** One statement for every lookup of a table. */
async function lookupTable(tx: RequestTransaction, table: CatalogTable, lookups: Lookup[]): Promise<void> {
  // Each distinct version is sent once; claims documents refer to them by (1-based) index.
  const index = new Map<Change, number>();
  const records: (readonly (string | null)[])[] = [];
  const claims: string[] = [];
  const wanted: (string | null)[] = [];
  const first = (lookups[0] as Lookup).changes[0] as Change;
  for (const [i, lookup] of lookups.entries()) {
    claims.push(lookup.claims);
    // null: the same versions as the claims before (equal lists are adjacent, see checkOnce).
    if (i > 0 && lookups[i - 1]?.changes === lookup.changes) {
      wanted.push(null);
      continue;
    }
    let literal = '{';
    for (const change of lookup.changes) {
      if (change.fields !== first.fields)
        throw new Error('changes of one table decoded with different columns');
      let n = index.get(change);
      if (n === undefined) {
        records.push(change.record);
        n = records.length;
        index.set(change, n);
      }
      literal += literal.length === 1 ? String(n) : `,${n}`;
    }
    wanted.push(`${literal}}`);
  }
  // The function's name is built from the catalog's oid, never from a request.
  const result = await tx.query({
    sql: `select claim_index, record_index from sluice.visible_versions_${Math.trunc(table.oid)}($1::text[], $2::text[], $3::text[], $4::text[])`,
    parameters: [claims, first.fields.map((f) => f.name), records, wanted],
  });
  const byIndex: Change[] = [];
  for (const [change, n] of index) byIndex[n] = change;
  for (const [claimIndex, recordIndex] of result.rows) {
    const lookup = lookups[Number(claimIndex) - 1];
    const change = byIndex[Number(recordIndex)];
    if (!lookup || !change) continue;
    for (const check of lookup.checks) check.visible?.add(change);
  }
}

/** The error sluice.visible_versions_<oid> raises when the table's policies or columns changed. */
function isStaleCheck(error: unknown): boolean {
  for (let e = error as { cause?: unknown; hint?: unknown } | undefined; e; e = e.cause as typeof e) {
    if (e.hint === 'sluice_stale_version_check') return true;
  }
  return false;
}

function qualifiedName(table: CatalogTable): string {
  return `${quoteIdent(table.schema)}.${quoteIdent(table.name)}`;
}

/** `list`, or an earlier list with the same changes (so equal lists are one object). */
function sharedList(lists: (readonly Change[])[], list: readonly Change[]): readonly Change[] {
  const previous = lists[lists.length - 1];
  if (previous && sameChanges(previous, list)) return previous;
  lists.push(list);
  return list;
}

/** The map under `key`, created empty when missing. */
function entry<K, K2, V>(map: Map<K, Map<K2, V>>, key: K): Map<K2, V> {
  let inner = map.get(key);
  if (!inner) {
    inner = new Map();
    map.set(key, inner);
  }
  return inner;
}

function sameChanges(a: readonly Change[], b: readonly Change[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

const claimsJson = new WeakMap<object, string>();

function claimsOf(identity: Identity): string {
  let json = claimsJson.get(identity.claims);
  if (json === undefined) {
    json = JSON.stringify(identity.claims);
    claimsJson.set(identity.claims, json);
  }
  return json;
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
