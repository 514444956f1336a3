import {
  type Change,
  comparePositions,
  continuePosition,
  isCovered,
  type Position,
  type PositionCodec,
} from '@sluice/changes';
import { type Identity, SluiceError } from '@sluice/core';
import {
  type CatalogColumn,
  type CatalogTable,
  decodeValue,
  parseTimestamp,
  type TypeRegistry,
} from '@sluice/db';
import { events, type Filter } from '@sluice/proto';
import type { RawBuilder } from 'kysely';
import { EventQueue } from './event-queue';
import type { RowValues } from './filter-matcher';

export type ChangeOp = Change['op'];

/** One table of a subscription, resolved against the catalog when the stream opened. */
export interface TableSubscription {
  readonly table: CatalogTable;
  readonly operations: ReadonlySet<ChangeOp>;
  /** The filter, on the new row (the old row for DELETE), in the table's column order. */
  readonly matches: (row: RowValues) => boolean;
  /** Columns sent to the client. */
  readonly projection: readonly CatalogColumn[];
  /** The request's filter, compiled to SQL for the snapshot. */
  readonly filter: Filter | undefined;
  /**
   * Set when `matches` cannot decide the filter exactly (RowMatcher.exact): the filter as SQL,
   * evaluated by PostgreSQL on each version (sql-filter.ts), and a key equal for equal filters.
   */
  readonly sqlFilter?: { readonly where: RawBuilder<unknown>; readonly key: string };
}

const OPERATION: Readonly<Record<ChangeOp, events.Operation>> = {
  INSERT: events.Operation.OPERATION_INSERT,
  UPDATE: events.Operation.OPERATION_UPDATE,
  DELETE: events.Operation.OPERATION_DELETE,
};

/**
 * One open Subscribe stream: what it asked for, who it runs as, how far it has got, and its
 * bounded queue of messages waiting for the client. Changes reach it in position order, from
 * its own catch-up reads first and then from the shared feed; anything at or before its
 * position is ignored, so the hand-over between the two can neither skip nor repeat.
 */
export class Subscriber {
  readonly queue: EventQueue<events.SubscribeResponse>;
  /** Everything at or before this position has been queued (or did not match). */
  position: Position;
  /** Position of the last message the client was sent (the resume point after an error). */
  lastSent: string;
  closed = false;

  constructor(
    readonly identity: Identity,
    readonly tables: ReadonlyMap<string, TableSubscription>,
    start: Position,
    private readonly codec: PositionCodec,
    private readonly types: () => TypeRegistry,
    limits: { readonly bufferEvents: number; readonly bufferBytes: number },
  ) {
    this.position = start;
    this.lastSent = codec.encode(start);
    this.queue = new EventQueue(limits.bufferEvents, limits.bufferBytes);
  }

  get bypassesRls(): boolean {
    return this.identity.role === 'service_role';
  }

  /** The table subscription a change is for, if this stream wants it (table, operation, position, snapshot, filter). */
  wants(change: Change): TableSubscription | undefined {
    if (this.closed || comparePositions(change.position, this.position) <= 0) return undefined;
    if (isCovered(this.position, change.position.window, change.xid)) return undefined;
    const sub = this.tables.get(tableKey(change));
    if (!sub?.operations.has(change.op)) return undefined;
    if (sub.filter === undefined) return sub;
    return sub.matches(rowInTableOrder(change, sub.table)) ? sub : undefined;
  }

  /** Queues a change event; on overflow the stream ends with RESOURCE_EXHAUSTED. */
  deliver(change: Change, sub: TableSubscription): void {
    const position = this.advance(change.position);
    const event = this.sharedEvent(change, sub, position);
    const bytes = 256 + change.record.reduce((n, v) => n + (v?.length ?? 0), 0);
    if (!this.queue.push({ message: { $case: 'change', value: event } }, bytes)) this.overflow();
  }

  /** Moves the position forward (after a batch in which nothing more matched, or a heartbeat). */
  advance(to: Position): string {
    // The stream's own snapshot cover goes on while its windows may hold covered changes.
    if (comparePositions(to, this.position) > 0) this.position = continuePosition(this.position, to);
    return this.position.cover
      ? this.codec.encode(this.position)
      : encodedPosition(this.codec, this.position);
  }

  /** Queues a heartbeat when nothing else is waiting (events carry positions themselves). */
  heartbeat(): void {
    if (this.closed || this.queue.length > 0) return;
    const heartbeat: events.Heartbeat = {
      position: this.codec.encode(this.position),
      serverTime: { seconds: BigInt(Math.floor(Date.now() / 1000)), nanos: (Date.now() % 1000) * 1e6 },
    };
    this.queue.push({ message: { $case: 'heartbeat', value: heartbeat } }, 64);
  }

  /** Ends the stream with `error` after the messages already queued (or at once with `drop`). */
  fail(error: SluiceError, drop = false): void {
    this.closed = true;
    this.queue.fail(error, { drop });
  }

  /**
   * Ends the stream because its changes could not be delivered (its RLS check failed): nothing
   * queued reaches the client, which resumes from the last position it was sent.
   */
  failDispatch(cause?: unknown): void {
    this.failResumable(
      new SluiceError('UNAVAILABLE', 'Delivering changes failed; reconnect from the last position', {
        reason: 'SLUICE_DISPATCH_FAILED',
        cause,
      }),
    );
  }

  /**
   * Ends the stream with `error`, dropping what is queued, with the position of the last
   * message the client was sent added to its metadata.
   */
  failResumable(error: SluiceError): void {
    this.fail(
      new SluiceError(error.code, error.message, {
        reason: error.reason,
        violations: error.violations,
        metadata: { ...error.metadata, position: this.lastSent },
        cause: error.cause ?? error,
      }),
      true,
    );
  }

  private overflow(): void {
    this.failResumable(
      new SluiceError(
        'RESOURCE_EXHAUSTED',
        'The client read too slowly and the stream buffer filled; reconnect from the last position',
        { reason: 'SLUICE_SLOW_CONSUMER' },
      ),
    );
  }

  /**
   * The event for this stream, shared with every other stream that would build the same one
   * (same position, columns and RLS treatment): a change fans out to many streams, and decoding
   * its row once is what keeps a batch's delivery cheap.
   */
  private sharedEvent(change: Change, sub: TableSubscription, position: string): events.ChangeEvent {
    let byShape = sharedEvents.get(change);
    if (!byShape) {
      byShape = new Map();
      sharedEvents.set(change, byShape);
    }
    const shape = `${this.bypassesRls ? 's' : 'r'}|${projectionKey(sub)}|${position}`;
    let event = byShape.get(shape);
    if (!event) {
      event = this.toEvent(change, sub, position);
      byShape.set(shape, event);
    }
    return event;
  }

  private toEvent(change: Change, sub: TableSubscription, position: string): events.ChangeEvent {
    const types = this.types();
    const keysOnly = change.op === 'DELETE' && !this.bypassesRls;
    const columns = keysOnly
      ? sub.table.primaryKey.map((name) => sub.table.columnsByName.get(name) as CatalogColumn)
      : sub.projection;
    const index = fieldIndex(change);
    const row = (values: readonly (string | null)[] | null) =>
      values
        ? {
            values: columns.map((c) => {
              const i = index.get(c.name);
              return decodeValue(i === undefined ? null : (values[i] ?? null), c.typeOid, types);
            }),
          }
        : undefined;
    const sent = new Set(columns.map((c) => c.name));
    const commitTime = parseTimestamp(change.committedAt);
    return {
      position,
      operation: OPERATION[change.op],
      schema: change.schema,
      table: change.table,
      columns: columns.map((c) => ({ name: c.name, type: types.name(c.typeOid) })),
      record: row(change.record),
      oldRecord: this.bypassesRls ? row(change.oldRecord) : undefined,
      changedColumns: change.changedColumns.filter((c) => sent.has(c)),
      commitTime,
      traceId: change.traceId ?? '',
      traceparent: change.traceparent ?? '',
    };
  }
}

const sharedEvents = new WeakMap<Change, Map<string, events.ChangeEvent>>();

const projectionKeys = new WeakMap<TableSubscription, string>();

/** The projected columns' names, as one string (equal for subscriptions asking the same columns). */
function projectionKey(sub: TableSubscription): string {
  let key = projectionKeys.get(sub);
  if (key === undefined) {
    key = JSON.stringify(sub.projection.map((c) => [c.name, c.typeOid]));
    projectionKeys.set(sub, key);
  }
  return key;
}

const tableKeys = new WeakMap<Change, string>();

/** "schema.table" of a change, built once per change (every subscriber asks). */
function tableKey(change: Change): string {
  let key = tableKeys.get(change);
  if (key === undefined) {
    key = `${change.schema}.${change.table}`;
    tableKeys.set(change, key);
  }
  return key;
}

// Every subscriber receiving a change sends the same position: sign it once.
const encodedPositions = new WeakMap<PositionCodec, WeakMap<Position, string>>();
function encodedPosition(codec: PositionCodec, position: Position): string {
  let byPosition = encodedPositions.get(codec);
  if (!byPosition) {
    byPosition = new WeakMap();
    encodedPositions.set(codec, byPosition);
  }
  let encoded = byPosition.get(position);
  if (encoded === undefined) {
    encoded = codec.encode(position);
    byPosition.set(position, encoded);
  }
  return encoded;
}

const fieldIndexes = new WeakMap<Change['fields'], Map<string, number>>();

function fieldIndex(change: Change): Map<string, number> {
  let index = fieldIndexes.get(change.fields);
  if (!index) {
    index = new Map(change.fields.map((f, i) => [f.name, i]));
    fieldIndexes.set(change.fields, index);
  }
  return index;
}

const tableOrderRows = new WeakMap<Change, { table: CatalogTable; row: RowValues }>();

/**
 * The change's row (new row, or old row for DELETE) in the catalog table's column order.
 * Computed once per change (every subscriber of the table filters the same row).
 */
export function rowInTableOrder(change: Change, table: CatalogTable): RowValues {
  const cached = tableOrderRows.get(change);
  if (cached?.table === table) return cached.row;
  const row = buildRowInTableOrder(change, table);
  tableOrderRows.set(change, { table, row });
  return row;
}

function buildRowInTableOrder(change: Change, table: CatalogTable): RowValues {
  const index = fieldIndex(change);
  const values = change.op === 'DELETE' ? (change.oldRecord ?? change.record) : change.record;
  return table.columns.map((c) => {
    const i = index.get(c.name);
    return i === undefined ? null : (values[i] ?? null);
  });
}
