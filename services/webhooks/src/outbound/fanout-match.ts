import { type Change, comparePositions } from '@sluice/changes';
import { SluiceError } from '@sluice/core';
import type { Database } from '@sluice/db';
import {
  checkVisibility,
  matchInDatabase,
  rowInTableOrder,
  type SqlFilterCheck,
  type VisibilityCheck,
} from '@sluice/events-service';
import type { CompiledSelection, FanoutEndpoint } from './fanout-endpoints';

/** A change one endpoint receives. */
export interface Wanted {
  readonly endpoint: FanoutEndpoint;
  readonly change: Change;
  readonly selection: CompiledSelection;
}

export interface MatchResult {
  /** Per endpoint in the order given, each endpoint's changes in position order. */
  readonly wanted: Wanted[];
  /**
   * Endpoints whose RLS check or SQL filter failed, or with a change of a selected table the
   * catalog does not know yet (the first error each): the changes of those tables are not in
   * `wanted`, their other tables' are.
   */
  readonly failed: Map<FanoutEndpoint, unknown>;
  /** How many endpoints needed an RLS check, SQL filter or catalog table (so could fail). */
  readonly checked: number;
}

interface Candidate {
  readonly change: Change;
  readonly selection: CompiledSelection;
  readonly check: VisibilityCheck | undefined;
  filter?: SqlFilterCheck;
}

/**
 * Which endpoint receives which change of a batch, by the events service's rules (dispatch.ts):
 * the table, the operation, the position after the endpoint's start, the filter (in memory
 * first, to spare checks), and the owner's RLS on the version the change carries (the new row,
 * the last row of a DELETE) — one batched check per (endpoint, table), identities of one role
 * merged (checkVisibility), never a query per change per endpoint. Filters memory cannot decide
 * go to PostgreSQL for the visible versions only, so a filter never tells an owner anything
 * about rows it may not see.
 */
export async function matchBatch(
  db: Database,
  endpoints: readonly FanoutEndpoint[],
  changes: readonly Change[],
  signal: AbortSignal,
  parallelism: number,
): Promise<MatchResult> {
  const candidates = new Map<FanoutEndpoint, Candidate[]>();
  const checks: VisibilityCheck[] = [];
  const failed = new Map<FanoutEndpoint, unknown>();
  for (const endpoint of endpoints) {
    let list: Candidate[] | undefined;
    let byTable: Map<CompiledSelection, VisibilityCheck> | undefined;
    for (const change of changes) {
      if (comparePositions(change.position, endpoint.start) <= 0) continue;
      const key = `${change.schema}.${change.table}`;
      if (endpoint.unresolved.has(key)) {
        if (!failed.has(endpoint))
          failed.set(
            endpoint,
            new SluiceError('FAILED_PRECONDITION', `${key} is not in the schema catalog (yet)`, {
              reason: 'SLUICE_UNKNOWN_TABLE',
              metadata: { table: key },
            }),
          );
        continue;
      }
      const selection = endpoint.tables.get(key);
      if (!selection?.operations.has(change.op)) continue;
      if (selection.matches && !selection.matches(rowInTableOrder(change, selection.table))) continue;
      let check: VisibilityCheck | undefined;
      if (!endpoint.bypassesRls) {
        byTable ??= new Map();
        check = byTable.get(selection);
        if (check) (check.changes as Change[]).push(change);
        else {
          check = { identity: endpoint.identity, table: selection.table, changes: [change] };
          byTable.set(selection, check);
          checks.push(check);
        }
      }
      list ??= [];
      list.push({ change, selection, check });
    }
    if (list) candidates.set(endpoint, list);
  }
  if (checks.length > 0) await checkVisibility(db, checks, signal, parallelism);

  const filters: SqlFilterCheck[] = [];
  for (const [endpoint, list] of candidates) {
    let byTable: Map<CompiledSelection, SqlFilterCheck> | undefined;
    for (const c of list) {
      if (!c.selection.sqlFilter || c.check?.error !== undefined) continue;
      if (c.check && !c.check.visible?.has(c.change)) continue;
      byTable ??= new Map();
      let filter = byTable.get(c.selection);
      if (filter) (filter.changes as Change[]).push(c.change);
      else {
        const { where, key } = c.selection.sqlFilter;
        filter = { identity: endpoint.identity, table: c.selection.table, where, key, changes: [c.change] };
        byTable.set(c.selection, filter);
        filters.push(filter);
      }
      c.filter = filter;
    }
  }
  if (filters.length > 0) await matchInDatabase(db, filters, signal);

  // A failed check or filter leaves out its (endpoint, table) changes only: the caller retries
  // the batch, or gives up on the failing ones and the endpoint's other tables still go out.
  const wanted: Wanted[] = [];
  for (const [endpoint, list] of candidates) {
    for (const c of list) {
      const error = c.check?.error ?? c.filter?.error;
      if (error !== undefined) {
        if (!failed.has(endpoint)) failed.set(endpoint, error);
        continue;
      }
      if (c.check && !c.check.visible?.has(c.change)) continue;
      if (c.selection.sqlFilter && !c.filter?.matched?.has(c.change)) continue;
      wanted.push({ endpoint, change: c.change, selection: c.selection });
    }
  }
  const couldFail = new Set(failed.keys());
  for (const [endpoint, list] of candidates)
    if (list.some((c) => c.check !== undefined || c.filter !== undefined)) couldFail.add(endpoint);
  return { wanted, failed, checked: couldFail.size };
}
