import type { Change } from '@sluice/changes';
import type { Identity } from '@sluice/core';
import type { CatalogTable, Database, RequestTransaction } from '@sluice/db';

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

/** Identities of one role that ask one table about the same rows with the same claims: asked once. */
interface Lookup {
  readonly table: CatalogTable;
  readonly claims: string;
  /** The rows' key values, row after row, as a text[] literal (one string per distinct list). */
  readonly keys: string;
  readonly checks: VisibilityCheck[];
}

const LOOKUP_SQL =
  'select claim_index, key from sluice.visible_rows($1::text[], $2::regclass, $3::text[], $4::regtype[], $5::text[])';

/**
 * Runs visibility checks in batches, as DESIGN.md asks: never a query per change per subscriber.
 * Checks are grouped by role into one transaction each, identities with the same claims and rows
 * merged; inside it, each table is asked once with sluice.visible_rows, which sets each
 * identity's claims in turn and looks up only the rows that identity wants, with a plan
 * PostgreSQL prepares once per connection (see the core migration). RLS decides with the
 * subscriber's own role and claims, as for a Select.
 */
export async function checkVisibility(
  db: Database,
  checks: readonly VisibilityCheck[],
  signal: AbortSignal,
  parallelism = 1,
): Promise<void> {
  // role -> table -> rows (keys literal) -> claims -> lookup; insertion order keeps equal row
  // lists together, so a repeated list is sent once.
  const byRole = new Map<string, Map<CatalogTable, Map<string, Map<string, Lookup>>>>();
  let previous: readonly Change[] = [];
  let previousKeys = '';
  for (const check of checks) {
    check.visible = new Set();
    if (check.changes.length === 0) continue;
    // Subscribers with the same filters want the same changes: build their literal once.
    const keys = sameChanges(check.changes, previous)
      ? previousKeys
      : keysLiteral(check.table, check.changes);
    previous = check.changes;
    previousKeys = keys;
    const byClaims = entry(entry(entry(byRole, check.identity.role), check.table), keys);
    const claims = claimsOf(check.identity);
    const lookup = byClaims.get(claims);
    if (lookup) lookup.checks.push(check);
    else byClaims.set(claims, { table: check.table, claims, keys, checks: [check] });
  }
  // Many identities of one role are split over several transactions (connections), so
  // PostgreSQL works on them in parallel instead of one backend running them all in turn.
  const groups: Lookup[][] = [];
  for (const byTable of byRole.values()) {
    const list: Lookup[] = [];
    for (const byKeys of byTable.values())
      for (const byClaims of byKeys.values()) for (const lookup of byClaims.values()) list.push(lookup);
    const size = Math.max(1, Math.ceil(list.length / parallelism));
    for (let i = 0; i < list.length; i += size) groups.push(list.slice(i, i + size));
  }
  await Promise.all(
    groups.map((lookups) =>
      db.transaction(
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
      ),
    ),
  );
}

/** One statement for every lookup of a table. */
async function lookupTable(tx: RequestTransaction, table: CatalogTable, lookups: Lookup[]): Promise<void> {
  const claims: string[] = [];
  const keys: (string | null)[] = [];
  for (const [i, lookup] of lookups.entries()) {
    claims.push(lookup.claims);
    // null: the same rows as the claims before (equal lists are adjacent, see checkVisibility).
    keys.push(i > 0 && lookups[i - 1]?.keys === lookup.keys ? null : lookup.keys);
  }
  // A single-column key has a lookup function of its own (created by sluice.enable_changes,
  // core migrations 000007-000008); the name is built from the catalog's oid, never from a request.
  const result =
    table.primaryKey.length === 1
      ? await tx.query({
          sql: `select claim_index, key from sluice.visible_rows_${Math.trunc(table.oid)}($1::text[], $2::text[])`,
          parameters: [claims, keys],
        })
      : await tx.query({
          sql: LOOKUP_SQL,
          parameters: [
            claims,
            `${quoteIdent(table.schema)}.${quoteIdent(table.name)}`,
            table.primaryKey,
            table.primaryKey.map((name) => table.columnsByName.get(name)?.typeSql ?? 'text'),
            keys,
          ],
        });
  for (const [index, key] of result.rows) {
    const lookup = lookups[Number(index) - 1];
    if (!lookup || typeof key !== 'string') continue;
    // PostgreSQL's JSON, re-serialised so it is exactly keyOf's.
    const normal = JSON.stringify(JSON.parse(key));
    for (const check of lookup.checks) check.visible?.add(normal);
  }
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

const keyElements = new WeakMap<object, string>();

/** The changes' key values, row after row, as a text[] literal. */
function keysLiteral(table: CatalogTable, changes: readonly Change[]): string {
  let literal = '{';
  for (const [i, change] of changes.entries()) {
    let element = keyElements.get(change.pk);
    if (element === undefined) {
      element = table.primaryKey.map((c) => arrayElement(change.pk[c] ?? null)).join(',');
      keyElements.set(change.pk, element);
    }
    literal += i === 0 ? element : `,${element}`;
  }
  return `${literal}}`;
}

function arrayElement(value: string | null): string {
  return value === null ? 'NULL' : `"${value.replace(/["\\]/g, '\\$&')}"`;
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
