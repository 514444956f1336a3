import { type ConcurrencyLimit, invalidArgument, LimitReason, SluiceError } from '@sluice/core';
import { compile, type Database, mapPgError, type RequestScope, type SchemaCatalog } from '@sluice/db';
import type { AuthenticatedContext } from '@sluice/grpc';
import type { data } from '@sluice/proto';
import {
  Access,
  explainError,
  orderByClause,
  type Plan,
  planCall,
  planDelete,
  planInsert,
  planSelect,
  planUpdate,
  resolveSelect,
  type SelectLimits,
  selectList,
  toRow,
} from '@sluice/query';
import { sql } from 'kysely';
import type { CallContext, ServiceImplementation } from 'nice-grpc';
import { describeSchema } from './describe-schema';

export interface DataServiceDeps {
  readonly db: Database;
  /** The current schema catalog (it is replaced after DDL). */
  readonly catalog: () => SchemaCatalog;
  readonly limits: SelectLimits & { readonly streamChunkRows: number; readonly streamStallTimeoutMs: number };
  /** Slots for calls that hold a connection for long: SelectStream and Transaction. */
  readonly longCalls: ConcurrencyLimit;
}

/** Most operations one Transaction call may carry. */
export const MAX_TRANSACTION_OPERATIONS = 100;

type Context = CallContext & AuthenticatedContext;

function scopeOf(context: Context, readOnly: boolean): RequestScope {
  const { signal, deadline, traceId, traceparent } = context.sluice;
  return {
    identity: context.identity,
    readOnly,
    signal,
    deadline,
    ...(traceId ? { traceId } : {}),
    // With tracing off, the caller's own traceparent is what changes carry to subscribers.
    ...(traceparent ? { traceparent } : {}),
  };
}

type OperationResponse = data.OperationResult['kind'];

function planOperation(
  op: data.Operation,
  access: Access,
  limits: SelectLimits,
  field: string,
): Plan<OperationResponse> {
  const kind = op.kind;
  const wrap = <R, C extends NonNullable<OperationResponse>['$case']>(
    plan: Plan<R>,
    $case: C,
  ): Plan<OperationResponse> => ({
    ...plan,
    finish: async (results, tx) => ({ $case, value: await plan.finish(results, tx) }) as OperationResponse,
  });
  switch (kind?.$case) {
    case 'select':
      return wrap(planSelect(kind.value, access, limits, `${field}.select.`), 'select');
    case 'insert':
      return wrap(planInsert(kind.value, access, `${field}.insert.`), 'insert');
    case 'update':
      return wrap(planUpdate(kind.value, access, `${field}.update.`), 'update');
    case 'delete':
      return wrap(planDelete(kind.value, access, `${field}.delete.`), 'delete');
    case 'call':
      return wrap(planCall(kind.value, access, `${field}.call.`), 'call');
    default:
      throw invalidArgument(
        'SLUICE_EMPTY_OPERATION',
        field,
        'An operation must set select, insert, update, delete or call',
      );
  }
}

/**
 * The DataService handlers: validate against the catalog, plan, then run each plan in one
 * request transaction under the caller's role and claims (see @sluice/db Database).
 */
export function createDataService(
  deps: DataServiceDeps,
): ServiceImplementation<typeof data.DataServiceDefinition, AuthenticatedContext> {
  const { db, limits, longCalls } = deps;
  const access = (context: Context) => new Access(deps.catalog(), context.identity.role);

  async function run<R>(plan: Plan<R>, context: Context): Promise<R> {
    const scope = scopeOf(context, plan.readOnly);
    try {
      if (plan.oneShot) return await plan.finish(await db.run(scope, plan.statements), undefined);
      return await db.transaction(scope, async (tx) =>
        plan.finish(await Promise.all(plan.statements.map((s) => tx.query(s))), tx),
      );
    } catch (error) {
      throw explainError(plan, error);
    }
  }

  return {
    select: (req, context) => run(planSelect(req, access(context), limits), context),
    insert: (req, context) => run(planInsert(req, access(context)), context),
    update: (req, context) => run(planUpdate(req, access(context)), context),
    delete: (req, context) => run(planDelete(req, access(context)), context),
    call: (req, context) => run(planCall(req, access(context)), context),

    async *selectStream(req, context) {
      if (!req.query) throw invalidArgument('SLUICE_QUERY_REQUIRED', 'query', 'A query is required');
      const q = req.query;
      if (q.pageToken !== '') {
        throw invalidArgument(
          'SLUICE_INVALID_PAGE_TOKEN',
          'query.page_token',
          'Streams do not take page tokens',
        );
      }
      const resolved = resolveSelect(q, access(context), 'query.');
      const limit = q.limit > 0 ? sql` limit ${sql.val(q.limit)}` : sql``;
      const statement = compile(
        sql`select ${selectList(resolved.columns)} from ${sql.id(resolved.table.schema, resolved.table.name)} where ${resolved.where}${orderByClause(resolved.order)}${limit} offset ${sql.val(q.offset)}`,
      );
      const chunkRows = Math.min(req.chunkSize || limits.streamChunkRows, 10_000);
      const types = deps.catalog().types;
      const slot = longCalls.acquire(context.identity);
      const chunks = db.stream(scopeOf(context, true), statement, chunkRows);
      let stalled = false;
      let rowsSent = 0;
      try {
        for (let first = true; ; first = false) {
          const next = await chunks.next();
          if (next.done) break;
          const chunk = next.value;
          // While the client has not taken this message the cursor's transaction sits idle on a
          // pooled connection. Past the stall timeout, give the connection (and the slot's share
          // of the total) back at once; nice-grpc cannot end a call whose write is blocked, so the
          // call ends with the error when the client reads again, cancels or hits its deadline.
          const timer = setTimeout(() => {
            stalled = true;
            slot.releaseTotal();
            context.sluice.logger.info(
              { rows_sent: rowsSent, stall_timeout_ms: limits.streamStallTimeoutMs },
              'stream stalled: connection released',
            );
            chunks.return(undefined).catch(() => {});
          }, limits.streamStallTimeoutMs);
          rowsSent += chunk.rows.length;
          try {
            yield {
              columns: first
                ? chunk.fields.map((f) => ({ name: f.name, type: types.name(f.dataTypeID) }))
                : [],
              rows: chunk.rows.map((row) => toRow(row, chunk.fields, types)),
            };
          } finally {
            clearTimeout(timer);
          }
          if (stalled) throw streamStalled(limits.streamStallTimeoutMs, rowsSent);
        }
      } finally {
        await chunks.return(undefined);
        slot.release();
      }
    },

    async transaction(req, context) {
      if (req.operations.length === 0) {
        throw invalidArgument(
          'SLUICE_OPERATIONS_REQUIRED',
          'operations',
          'A transaction needs at least one operation',
        );
      }
      if (req.operations.length > MAX_TRANSACTION_OPERATIONS) {
        throw invalidArgument(
          'SLUICE_TOO_MANY_OPERATIONS',
          'operations',
          `A transaction takes at most ${MAX_TRANSACTION_OPERATIONS} operations`,
        );
      }
      const a = access(context);
      // Every operation is validated before anything runs.
      const plans = req.operations.map((op, i) => planOperation(op, a, limits, `operations[${i}]`));
      const scope = scopeOf(
        context,
        plans.every((p) => p.readOnly),
      );
      using _slot = longCalls.acquire(context.identity);
      const results = await db.transaction(
        scope,
        async (tx) => {
          const out: data.OperationResult[] = [];
          for (const [i, plan] of plans.entries()) {
            try {
              const statementResults = await Promise.all(plan.statements.map((s) => tx.query(s)));
              out.push({ kind: await plan.finish(statementResults, tx) });
            } catch (error) {
              throw withOperationIndex(explainError(plan, mapPgError(error, scope.signal)) as SluiceError, i);
            }
          }
          return out;
        },
        { rollback: req.dryRun },
      );
      return { results, committed: !req.dryRun };
    },

    async describeSchema(req, context) {
      return describeSchema(deps.catalog(), context.identity.role, req.schemas);
    },
  };
}

/** The error a SelectStream ends with when its client stopped taking messages. */
function streamStalled(stallTimeoutMs: number, rowsSent: number): SluiceError {
  return new SluiceError(
    'RESOURCE_EXHAUSTED',
    `The stream was ended: its client did not take the next message within ${stallTimeoutMs} ms`,
    {
      reason: LimitReason.streamStalled,
      metadata: { stall_timeout_ms: String(stallTimeoutMs), rows_sent: String(rowsSent) },
    },
  );
}

/** Adds which operation failed to an error from inside a Transaction. */
function withOperationIndex(error: SluiceError, index: number): SluiceError {
  return new SluiceError(error.code, `operations[${index}]: ${error.message}`, {
    reason: error.reason,
    violations: error.violations.map((v) => ({
      ...v,
      field: v.field.startsWith('operations[') ? v.field : `operations[${index}].${v.field}`,
    })),
    metadata: { ...error.metadata, operation_index: String(index) },
    cause: error.cause,
  });
}
