import {
  type ChangeFeed,
  currentPosition,
  latestPosition,
  type Position,
  type PositionCodec,
  parseSnapshot,
  type Snapshot,
  snapshotPosition,
} from '@sluice/changes';
import {
  type ConcurrencyLimit,
  invalidArgument,
  LimitReason,
  type LinkedSignal,
  SluiceError,
  timeLimit,
} from '@sluice/core';
import { compile, type Database, mapPgError, type SchemaCatalog } from '@sluice/db';
import type { AuthenticatedContext } from '@sluice/grpc';
import { events, Filter } from '@sluice/proto';
import { Access, compileFilter, selectList, toRow } from '@sluice/query';
import { sql } from 'kysely';
import type { CallContext, ServiceImplementation } from 'nice-grpc';
import type { EventsConfig } from './config';
import { compileMatcher } from './filter-matcher';
import type { SubscriptionHub } from './hub';
import { type ChangeOp, Subscriber, type TableSubscription } from './subscriber';

export interface EventsServiceDeps {
  readonly db: Database;
  readonly catalog: () => SchemaCatalog;
  /** Tables with change capture enabled ("schema.table"), refreshed after DDL. */
  readonly captured: () => ReadonlySet<string>;
  readonly feed: ChangeFeed;
  readonly hub: SubscriptionHub;
  readonly codec: PositionCodec;
  readonly stream: EventsConfig['stream'];
  /** Aborted when the server starts shutting down: streams end with UNAVAILABLE and their position. */
  readonly draining: AbortSignal;
  /** Slots for open Subscribe calls, per identity and in total. */
  readonly subscriptions: ConcurrencyLimit;
  /** Slots for snapshots being read (each holds a pooled connection while it reads). */
  readonly snapshots: ConcurrencyLimit;
}

type Context = CallContext & AuthenticatedContext;

const OPS: Readonly<Record<number, ChangeOp>> = {
  [events.Operation.OPERATION_INSERT]: 'INSERT',
  [events.Operation.OPERATION_UPDATE]: 'UPDATE',
  [events.Operation.OPERATION_DELETE]: 'DELETE',
};

/** Validates a SubscribeRequest's tables against the catalog, the role's privileges and capture. */
function resolveTables(
  req: events.SubscribeRequest,
  access: Access,
  deps: EventsServiceDeps,
): Map<string, TableSubscription> {
  if (req.tables.length === 0)
    throw invalidArgument('SLUICE_TABLES_REQUIRED', 'tables', 'Subscribe to at least one table');
  if (req.tables.length > deps.stream.maxTablesPerSubscription) {
    throw invalidArgument(
      'SLUICE_TOO_MANY_TABLES',
      'tables',
      `At most ${deps.stream.maxTablesPerSubscription} tables per subscription`,
    );
  }
  const out = new Map<string, TableSubscription>();
  for (const [i, t] of req.tables.entries()) {
    const field = `tables[${i}]`;
    const table = access.table(t.schema, t.table, `${field}.table`, 'select');
    const key = `${table.schema}.${table.name}`;
    if (out.has(key))
      throw invalidArgument('SLUICE_DUPLICATE_TABLE', `${field}.table`, `${key} is listed twice`);
    if (!deps.captured().has(key)) {
      throw new SluiceError(
        'FAILED_PRECONDITION',
        `Change capture is not enabled for ${key} (sluice.enable_changes)`,
        {
          reason: 'SLUICE_CAPTURE_DISABLED',
          violations: [{ field: `${field}.table`, description: 'change capture is not enabled' }],
        },
      );
    }
    const operations = new Set<ChangeOp>();
    for (const [j, op] of t.operations.entries()) {
      const name = OPS[op];
      if (!name)
        throw invalidArgument(
          'SLUICE_UNKNOWN_OPERATION',
          `${field}.operations[${j}]`,
          `Unknown operation ${op}`,
        );
      operations.add(name);
    }
    if (operations.size === 0) for (const op of Object.values(OPS)) operations.add(op);
    const projection = access.columns(table, t.columns, `${field}.columns`, 'select');
    // Every event carries the row's key (a DELETE nothing else): refused up front for a role
    // that may not read a key column, rather than failing later, batch after batch.
    for (const name of table.primaryKey) access.column(table, name, `${field}.table`, 'select');
    const matches = compileMatcher(
      t.filter,
      table.columns.map((c) => ({ name: c.name, typeOid: c.typeOid, collation: c.collation })),
      access.catalog.types,
      `${field}.filter`,
      (name, f) => {
        access.column(table, name, f, 'select');
      },
    );
    // What memory cannot decide exactly is asked of PostgreSQL, in the data service's SQL.
    const sqlFilter =
      t.filter && !matches.exact
        ? {
            where: compileFilter(t.filter, access, table, `${field}.filter`),
            key: Buffer.from(Filter.encode(t.filter).finish()).toString('base64'),
          }
        : undefined;
    out.set(key, { table, operations, matches, projection, filter: t.filter, sqlFilter });
  }
  return out;
}

/**
 * The EventsService: Subscribe validates the request, picks the start position (now, a
 * client's position, or a consistent snapshot), catches up from the log, then follows the
 * shared feed. Messages leave through the stream's bounded queue.
 */
export function createEventsService(
  deps: EventsServiceDeps,
): ServiceImplementation<typeof events.EventsServiceDefinition, AuthenticatedContext> {
  async function snapshotRows(
    context: Context,
    tables: Map<string, TableSubscription>,
  ): Promise<{ rows: events.SnapshotRow[]; snapshot: Snapshot }> {
    const access = new Access(deps.catalog(), context.identity.role);
    // The rows are read completely before the first is sent, so a client that stops reading
    // never holds the connection; the slot and the time limit bound how long reading may.
    using _slot = deps.snapshots.acquire(context.identity);
    using limited = snapshotTimeLimit(context.sluice.signal, deps.stream.snapshotTimeoutMs);
    const scope = {
      identity: context.identity,
      readOnly: true,
      repeatableRead: true,
      signal: limited.signal,
      deadline: undefined,
    };
    // Awaited here: the slot and the time limit are let go when the transaction has ended.
    return await deps.db.transaction(scope, async (tx) => {
      // In REPEATABLE READ every statement sees the transaction's one snapshot: this is it.
      const snap = await tx.query(compile(sql`select pg_current_snapshot()::text`));
      const text = snap.rows[0]?.[0];
      if (typeof text !== 'string')
        throw new SluiceError('INTERNAL', 'pg_current_snapshot() returned nothing');
      const snapshot = parseSnapshot(text);
      const rows: events.SnapshotRow[] = [];
      const types = deps.catalog().types;
      for (const [i, sub] of [...tables.values()].entries()) {
        const where = sub.filter
          ? compileFilter(sub.filter, access, sub.table, `tables[${i}].filter`)
          : sql`true`;
        const limit = deps.stream.snapshotMaxRows - rows.length + 1;
        const result = await tx.query(
          compile(
            sql`select ${selectList(sub.projection)} from ${sql.id(sub.table.schema, sub.table.name)} where ${where} limit ${sql.val(limit)}`,
          ),
        );
        if (rows.length + result.rows.length > deps.stream.snapshotMaxRows) {
          throw new SluiceError(
            'FAILED_PRECONDITION',
            `The snapshot has more than ${deps.stream.snapshotMaxRows} rows; narrow the filter`,
            {
              reason: 'SLUICE_SNAPSHOT_TOO_LARGE',
            },
          );
        }
        const columns = result.fields.map((f) => ({ name: f.name, type: types.name(f.dataTypeID) }));
        for (const row of result.rows) {
          rows.push({
            schema: sub.table.schema,
            table: sub.table.name,
            columns,
            record: toRow(row, result.fields, types),
          });
        }
      }
      return { rows, snapshot };
    });
  }

  return {
    async *subscribe(req, context) {
      const access = new Access(deps.catalog(), context.identity.role);
      const tables = resolveTables(req, access, deps);
      using _subscription = deps.subscriptions.acquire(context.identity);
      const { signal } = context.sluice;
      const start = req.start;
      let position: Position;
      let snapshot: { rows: events.SnapshotRow[]; snapshot: Snapshot } | undefined;
      try {
        if (start?.$case === 'fromPosition') {
          position = deps.codec.decode(start.value, 'from_position');
        } else if (start?.$case === 'snapshot' && start.value) {
          // Read before the snapshot is taken: every change up to it is in the snapshot.
          const before = await latestPosition(deps.db.pool, { signal });
          snapshot = await snapshotRows(context, tables);
          position = await snapshotPosition(deps.db.pool, before, snapshot.snapshot, { signal });
        } else {
          position = await currentPosition(deps.db.pool, { signal });
        }
      } catch (error) {
        // The change log's readers throw node-postgres' errors as they are: mapped here, so a
        // database that cannot be reached is UNAVAILABLE (retry), not INTERNAL.
        throw mapPgError(error, signal);
      }
      const subscriber = new Subscriber(
        context.identity,
        tables,
        position,
        deps.codec,
        () => deps.catalog().types,
        deps.stream,
      );
      // Queued messages are dropped, not flushed: the error's position is the last message sent,
      // so a client resuming from it neither misses nor repeats any of them.
      const onDrain = () =>
        subscriber.failResumable(
          new SluiceError('UNAVAILABLE', 'The server is shutting down; reconnect from the last position', {
            reason: 'SLUICE_SHUTTING_DOWN',
          }),
        );
      deps.draining.addEventListener('abort', onDrain, { once: true });
      if (deps.draining.aborted) onDrain();
      const heartbeat = setInterval(() => subscriber.heartbeat(), deps.stream.heartbeatMs);
      heartbeat.unref();
      try {
        if (snapshot) {
          for (const row of snapshot.rows) yield { message: { $case: 'snapshotRow', value: row } };
          subscriber.lastSent = deps.codec.encode(position);
          yield { message: { $case: 'snapshotEnd', value: { position: subscriber.lastSent } } };
        }
        void deps.hub.catchUpAndAttach(subscriber, signal);
        for (;;) {
          const message = await subscriber.queue.next(signal);
          const m = message.message;
          if (m?.$case === 'change' || m?.$case === 'heartbeat') subscriber.lastSent = m.value.position;
          yield message;
        }
      } finally {
        subscriber.closed = true;
        clearInterval(heartbeat);
        deps.draining.removeEventListener('abort', onDrain);
        deps.hub.detach(subscriber);
      }
    },
  };
}

/**
 * `signal`, also aborted when `ms` pass with DEADLINE_EXCEEDED (SLUICE_SNAPSHOT_TIMEOUT): the
 * running statement is then cancelled and the snapshot's connection released. Dispose it to
 * stop the timer.
 */
function snapshotTimeLimit(signal: AbortSignal, ms: number): LinkedSignal {
  return timeLimit(
    signal,
    ms,
    new SluiceError('DEADLINE_EXCEEDED', `The snapshot took longer than ${ms} ms; narrow the filter`, {
      reason: LimitReason.snapshotTimeout,
    }),
  );
}
