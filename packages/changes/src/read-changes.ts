import { type AbortOptions, SluiceError, throwIfAborted } from '@sluice/core';
import { releaseClient } from '@sluice/db';
import pg from 'pg';
import type { Logger } from 'pino';
import { ChangesReason } from './errors';
import { comparePositions, continuePosition, formatSnapshot, type Position, type Snapshot } from './position';

/** A column of a change's rows, as node-postgres describes a result field. */
export interface ChangeField {
  readonly name: string;
  readonly dataTypeID: number;
}

/** The shape shared by decoded rows: their columns in order. */
export interface ChangeTableRows {
  readonly fields: readonly ChangeField[];
}

export type ChangeOp = 'INSERT' | 'UPDATE' | 'DELETE';

export interface Change {
  /** (window, id): the delivery order (see sluice.change_window). */
  readonly position: Position;
  /** The writing transaction. */
  readonly xid: bigint;
  readonly schema: string;
  readonly table: string;
  readonly op: ChangeOp;
  /** The row as raw PostgreSQL text values in `fields` order (record for INSERT/UPDATE, old row for DELETE). */
  readonly record: readonly (string | null)[];
  /** The old row (UPDATE/DELETE), raw text in `fields` order; null for INSERT. */
  readonly oldRecord: readonly (string | null)[] | null;
  readonly fields: readonly ChangeField[];
  /** Primary key column -> raw text value, in the table's column order. */
  readonly pk: Readonly<Record<string, string | null>>;
  /** UPDATE: the columns whose values differ (jsonb key order); empty otherwise. */
  readonly changedColumns: readonly string[];
  readonly actor: string | null;
  readonly tenantId: string | null;
  /** W3C trace id of the writing call (from `traceparent`, or as stored when tracing was off). */
  readonly traceId: string | null;
  /**
   * W3C traceparent of the writer (its SQL statement's or call's span, or the caller's), when the
   * change log holds one; null when only a trace id (or nothing) was stored.
   */
  readonly traceparent: string | null;
  /** Start time of the writing transaction, as PostgreSQL prints timestamptz in the session (UTC, ISO). */
  readonly committedAt: string;
}

export interface ChangeBatch {
  readonly changes: readonly Change[];
  /** Every change at or before `until` has been read: resume after it. */
  readonly until: Position;
}

export interface ReadChangesOptions extends AbortOptions {
  /** Where to note (at debug) changes skipped because their table no longer exists. */
  readonly logger?: Logger;
  /** Append a window for newly committed changes before reading (default true). */
  readonly append?: boolean;
  /**
   * The `untilStamp` of the read that returned `after` (the change feed passes it): the read
   * fails with SLUICE_CHANGE_LOG_REGRESSED when that window is no longer the one read then.
   */
  readonly afterStamp?: string;
}

/** What the change feed needs beyond the batch. */
export interface ReadResult {
  readonly batch: ChangeBatch;
  /** `limit` changes (or the most windows one read takes) were returned: more may follow right away. */
  readonly full: boolean;
  /** Another session was appending a window: its changes are about to be readable. */
  readonly waiting: boolean;
  /** pg_current_snapshot() as text, taken just before the read (when `append` was on). */
  readonly snapshotBefore: string | undefined;
  /** Identifies the window of `batch.until` (its creation time): pass it back as `afterStamp`. */
  readonly untilStamp: string | undefined;
}

// Windows looked at per read: bounds the rows one read sorts (each window gives at most `limit`).
const WINDOWS_PER_READ = 16;

// sluice.append_change_window returns -1 when another session holds the append lock. $1 is the
// newest window the caller has read: the append raises data_corrupted rather than issue that
// number again when the log lost it (core migration 000005; the append commits synchronously).
const APPEND_SQL = `select sluice.append_change_window(false, $1::bigint)::text as seq, pg_catalog.pg_current_snapshot()::text as snap`;

// The retention watermark, and what the log says about the reader's position: its newest window
// and the window of the position (gone once purged).
const STATE_SQL = `
select p.window_seq::text, p.last_id::text,
       (select w.seq from sluice.change_window w order by w.seq desc limit 1)::text as newest,
       a.last_id::text as at_last_id, a.created_at::text as at_stamp
  from sluice.change_log_purged p
  left join sluice.change_window a on a.seq = $1::bigint`;

interface LogState {
  readonly window_seq: string | null;
  readonly last_id: string | null;
  readonly newest: string | null;
  readonly at_last_id: string | null;
  readonly at_stamp: string | null;
}

// A window's changes: visible in its boundary, not in the previous window's (its floor), in id
// order after the position. A window left with none still gives one row (c.id null) so the
// reader learns where it ends. Changes covered by the client's snapshot ($3, through window $4)
// are left out here already.
const READ_SQL = `
with windows as (
  select w.seq, w.boundary, w.first_id, w.last_id, w.created_at, f.boundary as floor
    from sluice.change_window w
    join sluice.change_window f on f.seq = w.seq - 1
   where w.seq >= $1::bigint and (w.seq > $1::bigint or w.last_id > $2::bigint)
   order by w.seq
   limit ${WINDOWS_PER_READ}
)
select w.seq::text, w.last_id::text, c.id::text, c.xid::text, c.schema, c."table", c.op, c.pk::text,
       pg_catalog.array_to_json(c.changed_columns)::text, c.actor, c.tenant_id, c.trace_id,
       c.committed_at::text, w.created_at::text,
       exists (
         select 1
           from pg_catalog.pg_class k
           join pg_catalog.pg_namespace n on n.oid = k.relnamespace
          where n.nspname = c.schema and k.relname = c."table" and k.relkind in ('r', 'p')
            and pg_catalog.has_schema_privilege(n.oid, 'USAGE')
       )::text
  from windows w
  left join lateral (
    select l.*
      from sluice.change_log l
     where l.id between case when w.seq = $1::bigint then pg_catalog.int8larger(w.first_id, $2::bigint + 1)
                             else w.first_id end
                    and w.last_id
       and pg_catalog.pg_visible_in_snapshot(l.xid, w.boundary)
       and not pg_catalog.pg_visible_in_snapshot(l.xid, w.floor)
       and ($3::pg_snapshot is null or w.seq > $4::bigint
            or not pg_catalog.pg_visible_in_snapshot(l.xid, $3::pg_snapshot))
     order by l.id
     limit $5
  ) c on true
 order by w.seq, c.id
 limit $5`;

const TRACEPARENT_RE = /^[\da-f]{2}-([\da-f]{32})-[\da-f]{16}-[\da-f]{2}$/;

/**
 * The change log's trace column holds the writer's traceparent (`sluice.trace_id`, set by the
 * Database with each request transaction), or a bare trace id when the writer had no span and
 * only a trace id to give.
 */
function traceFields(stored: string | null): { traceId: string | null; traceparent: string | null } {
  if (!stored) return { traceId: null, traceparent: null };
  const m = TRACEPARENT_RE.exec(stored);
  return m ? { traceId: m[1] as string, traceparent: stored } : { traceId: stored, traceparent: null };
}

type LogRow = [
  seq: string,
  lastId: string,
  id: string | null,
  xid: string,
  schema: string,
  table: string,
  op: ChangeOp,
  pk: string,
  changed: string,
  actor: string | null,
  tenantId: string | null,
  traceId: string | null,
  committedAt: string,
  stamp: string,
  decodable: string,
];

interface DecodedRows {
  readonly fields: readonly ChangeField[];
  readonly byId: Map<string, { record: (string | null)[]; old: (string | null)[] }>;
}

/**
 * Reads up to `limit` committed changes after `after`, in (window, id) order (see
 * sluice.change_window): a change is readable as soon as its transaction has committed and a
 * window holds it, and a change that depends on another (same row, or anything its transaction
 * saw committed) always comes after it. Unless `append` is false, first appends a window for
 * changes committed since the last one. Changes covered by `after.cover` (already in the client's
 * snapshot) are skipped. Rows are decoded with jsonb_populate_record(null::<table>, record) as
 * exact PostgreSQL text (pool from @sluice/db createPool). Changes of tables that no longer exist
 * are skipped.
 *
 * Cancellation: `signal` is checked between the statements of the read.
 * @throws SluiceError OUT_OF_RANGE reason SLUICE_POSITION_EXPIRED when retention has deleted
 *   changes after `after`.
 */
export async function readChanges(
  pool: pg.Pool,
  after: Position,
  limit: number,
  options: ReadChangesOptions = {},
): Promise<ChangeBatch> {
  return (await readChangesDetailed(pool, after, limit, options)).batch;
}

/** readChanges, also telling whether more changes are ready or about to be (for the feed). */
export async function readChangesDetailed(
  pool: pg.Pool,
  after: Position,
  limit: number,
  options: ReadChangesOptions = {},
): Promise<ReadResult> {
  if (!Number.isInteger(limit) || limit < 1)
    throw new RangeError(`limit must be a positive integer: ${limit}`);
  for (let attempt = 1; ; attempt++) {
    try {
      return await readOnce(pool, after, limit, options);
    } catch (error) {
      // A table dropped between the read and the decoding of its rows: read again, it is skipped now.
      if (attempt < 3 && (error as { code?: string }).code === '42P01') continue;
      throw error;
    }
  }
}

/**
 * The log must still hold what the reader has read: its newest window at or after the position's,
 * the position's window no shorter than the position, and (given its stamp) the very window read.
 * Otherwise windows were lost and numbers may be issued again: reading on would skip changes.
 */
function throwIfRegressed(after: Position, state: LogState, afterStamp: string | undefined): void {
  const regressed =
    state.newest === null ||
    BigInt(state.newest) < after.window ||
    (state.at_last_id !== null && BigInt(state.at_last_id) < after.id) ||
    (afterStamp !== undefined && state.at_stamp !== null && state.at_stamp !== afterStamp);
  if (regressed) throw logRegressed(after, state.newest);
}

function logRegressed(after: Position, newest: string | null, cause?: unknown): SluiceError {
  return new SluiceError(
    'UNAVAILABLE',
    'The change log no longer holds changes already read from it (the database lost committed change windows): positions read before cannot be resumed; start again from a snapshot',
    {
      reason: ChangesReason.logRegressed,
      metadata: { window: after.window.toString(), ...(newest !== null ? { newest_window: newest } : {}) },
      ...(cause !== undefined ? { cause } : {}),
    },
  );
}

/** True for the error sluice.append_change_window raises when the log is behind `known_seq`. */
function isAppendRegression(error: unknown): boolean {
  return (error as { code?: unknown }).code === 'XX001';
}

function throwIfExpired(
  after: Position,
  purged: { window_seq: string | null; last_id: string | null },
): void {
  if (purged.window_seq === null || purged.last_id === null) return;
  const end = { window: BigInt(purged.window_seq), id: BigInt(purged.last_id) };
  if (comparePositions(after, end) < 0) {
    throw new SluiceError(
      'OUT_OF_RANGE',
      'The position is older than the change log retention: start again from a snapshot',
      { reason: ChangesReason.positionExpired },
    );
  }
}

async function readOnce(
  pool: pg.Pool,
  after: Position,
  limit: number,
  { signal, logger, append = true, afterStamp }: ReadChangesOptions,
): Promise<ReadResult> {
  throwIfAborted(signal);
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    const cover = after.cover;
    // The append commits on its own before the read's snapshot is taken, so the read sees it.
    const appending = append
      ? client
          .query<{ seq: string | null; snap: string }>(APPEND_SQL, [after.window.toString()])
          .catch((error: unknown) => {
            throw isAppendRegression(error) ? logRegressed(after, null, error) : error;
          })
      : undefined;
    const [appended, , state, read] = await Promise.all([
      appending,
      client.query('begin isolation level repeatable read read only'),
      client.query<LogState>(STATE_SQL, [after.window.toString()]),
      client.query<LogRow>({
        text: READ_SQL,
        values: [
          after.window.toString(),
          after.id.toString(),
          cover ? formatSnapshot(cover.snapshot) : null,
          cover ? cover.throughWindow.toString() : null,
          limit,
        ],
        rowMode: 'array',
      }),
    ]);
    const p = state.rows[0];
    if (!p) throw new SluiceError('INTERNAL', 'sluice.change_log_purged has no row');
    throwIfExpired(after, p);
    throwIfRegressed(after, p, afterStamp);
    throwIfAborted(signal);

    const rows = read.rows;
    const tables = new Map<string, { schema: string; table: string; ids: string[] }>();
    for (const row of rows) {
      if (row[2] === null || row[14] !== 'true') continue;
      const key = `${row[4]}.${row[5]}`;
      let entry = tables.get(key);
      if (!entry) {
        entry = { schema: row[4], table: row[5], ids: [] };
        tables.set(key, entry);
      }
      entry.ids.push(row[2]);
    }
    const decoded = new Map<string, DecodedRows>();
    await Promise.all(
      [...tables].map(async ([key, t]) => {
        decoded.set(key, await decodeRows(client, t.schema, t.table, t.ids));
      }),
    );
    await client.query('commit');

    const changes: Change[] = [];
    const windows = new Set<string>();
    for (const row of rows) {
      windows.add(row[0]);
      const idText = row[2];
      if (idText === null) continue;
      const rowsOfTable = decoded.get(`${row[4]}.${row[5]}`);
      const values = rowsOfTable?.byId.get(idText);
      if (!rowsOfTable || !values) {
        logger?.debug(
          { schema: row[4], table: row[5], id: idText },
          'change of a table that no longer exists skipped',
        );
        continue;
      }
      const op = row[6];
      const record = op === 'DELETE' ? values.old : values.record;
      const pkKeys = new Set(Object.keys(JSON.parse(row[7]) as Record<string, unknown>));
      const pk: Record<string, string | null> = {};
      rowsOfTable.fields.forEach((f, i) => {
        if (pkKeys.has(f.name)) pk[f.name] = record[i] ?? null;
      });
      changes.push({
        position: continuePosition(after, { window: BigInt(row[0]), id: BigInt(idText) }),
        xid: BigInt(row[3]),
        schema: row[4],
        table: row[5],
        op,
        record,
        oldRecord: op === 'INSERT' ? null : values.old,
        fields: rowsOfTable.fields,
        pk,
        changedColumns: JSON.parse(row[8]) as string[],
        actor: row[9],
        tenantId: row[10],
        ...traceFields(row[11]),
        committedAt: row[12],
      });
    }

    // A full read stops at its last row; otherwise every window it looked at was read to its end.
    const full = rows.length === limit || windows.size === WINDOWS_PER_READ;
    const last = rows[rows.length - 1];
    let reached: { window: bigint; id: bigint } = { window: after.window, id: after.id };
    let untilStamp = p.at_stamp ?? undefined;
    if (last) {
      const lastId = rows.length === limit && last[2] !== null ? last[2] : last[1];
      reached = { window: BigInt(last[0]), id: BigInt(lastId) };
      untilStamp = last[13];
    }
    return {
      batch: { changes, until: continuePosition(after, reached) },
      full,
      waiting: appended?.rows[0]?.seq === '-1',
      snapshotBefore: appended?.rows[0]?.snap,
      untilStamp,
    };
  } catch (error) {
    broken = error as Error;
    await client.query('rollback').catch(() => {});
    throw error;
  } finally {
    // A failed connection must not go back to the pool; a failed statement leaves it usable.
    releaseClient(client, broken instanceof SluiceError ? undefined : broken);
  }
}

const JSON_OID = 114;
const JSONB_OID = 3802;

async function decodeRows(
  client: pg.PoolClient,
  schema: string,
  table: string,
  ids: string[],
): Promise<DecodedRows> {
  const type = `${pg.escapeIdentifier(schema)}.${pg.escapeIdentifier(table)}`;
  // jsonb_populate_record reads a JSON null as SQL NULL; the capture trigger leaves SQL NULL
  // json/jsonb columns out of the logged row (core migration 000004), so the keys holding null
  // are listed too, and those of json columns are JSON null.
  const result = await client.query<(string | null)[]>({
    text: `select c.id::text,
                  (select pg_catalog.jsonb_agg(e.key) from pg_catalog.jsonb_each(c.record) e where e.value = 'null'::jsonb)::text,
                  (select pg_catalog.jsonb_agg(e.key) from pg_catalog.jsonb_each(c.old_record) e where e.value = 'null'::jsonb)::text,
                  r.*, o.*
             from sluice.change_log c
             left join lateral pg_catalog.jsonb_populate_record(null::${type}, c.record) r on true
             left join lateral pg_catalog.jsonb_populate_record(null::${type}, c.old_record) o on true
            where c.id = any($1::bigint[])`,
    values: [ids],
    rowMode: 'array',
  });
  const width = (result.fields.length - 3) / 2;
  const fields = result.fields.slice(3, 3 + width).map((f) => ({ name: f.name, dataTypeID: f.dataTypeID }));
  const jsonAt = fields.flatMap((f, i) =>
    f.dataTypeID === JSON_OID || f.dataTypeID === JSONB_OID ? [i] : [],
  );
  const withJsonNulls = (values: (string | null)[], nulls: string | null) => {
    if (nulls === null || jsonAt.length === 0) return values;
    const names = new Set(JSON.parse(nulls) as string[]);
    for (const i of jsonAt)
      if (values[i] === null && names.has((fields[i] as ChangeField).name)) values[i] = 'null';
    return values;
  };
  const byId = new Map<string, { record: (string | null)[]; old: (string | null)[] }>();
  for (const row of result.rows) {
    byId.set(row[0] as string, {
      record: withJsonNulls(row.slice(3, 3 + width), row[1] ?? null),
      old: withJsonNulls(row.slice(3 + width), row[2] ?? null),
    });
  }
  return { fields, byId };
}

/**
 * The end of the newest change window: everything committed before it was appended has been
 * delivered from there on. Does not append (see currentPosition).
 *
 * Cancellation: checked before the query.
 */
export async function latestPosition(pool: pg.Pool, { signal }: AbortOptions = {}): Promise<Position> {
  throwIfAborted(signal);
  const { rows } = await pool.query<{ seq: string; last_id: string }>(
    // Qualified: a bare `seq` would order by the text output column ('9' > '10').
    'select w.seq::text, w.last_id::text from sluice.change_window w order by w.seq desc limit 1',
  );
  const w = rows[0];
  if (!w) throw new SluiceError('INTERNAL', 'sluice.change_window has no row');
  return { window: BigInt(w.seq), id: BigInt(w.last_id) };
}

/**
 * The position a subscriber starting "now" resumes from: a window is appended for the changes
 * committed so far, and the position is its end.
 *
 * Cancellation: checked before the queries.
 */
export async function currentPosition(pool: pg.Pool, options: AbortOptions = {}): Promise<Position> {
  throwIfAborted(options.signal);
  await pool.query(APPEND_SQL, [null]);
  return latestPosition(pool, options);
}

/**
 * The position that continues a consistent snapshot: `before` is latestPosition() read before the
 * snapshot was taken; the changes after it that the snapshot already shows are covered, up to a
 * window appended now (its boundary is taken after the snapshot, so later windows hold none).
 *
 * Cancellation: checked before the query.
 */
export async function snapshotPosition(
  pool: pg.Pool,
  before: Position,
  snapshot: Snapshot,
  { signal }: AbortOptions = {},
): Promise<Position> {
  throwIfAborted(signal);
  const { rows } = await pool.query<{ seq: string }>('select sluice.append_change_window(true)::text as seq');
  const seq = rows[0]?.seq;
  if (seq === undefined) throw new SluiceError('INTERNAL', 'sluice.append_change_window returned no row');
  return { window: before.window, id: before.id, cover: { snapshot, throughWindow: BigInt(seq) } };
}

/**
 * Tables with capture enabled, as "schema.table" (unquoted names).
 *
 * Cancellation: checked before the query.
 */
export async function capturedTables(pool: pg.Pool, { signal }: AbortOptions = {}): Promise<Set<string>> {
  throwIfAborted(signal);
  const { rows } = await pool.query<{ schema: string; table: string }>(
    'select schema, "table" from sluice.captured_tables',
  );
  return new Set(rows.map((r) => `${r.schema}.${r.table}`));
}
