import { type AbortOptions, SluiceError, throwIfAborted } from '@sluice/core';
import pg from 'pg';
import type { Logger } from 'pino';
import { comparePositions, formatSnapshot, type Position, type Snapshot } from './position';

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
  readonly position: Position;
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
  readonly traceId: string | null;
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
}

/** What the change feed needs beyond the batch. */
export interface ReadResult {
  readonly batch: ChangeBatch;
  /** `limit` changes were returned: more may follow right away. */
  readonly full: boolean;
  /** Committed changes exist past `until` that wait for an older, still running transaction. */
  readonly waiting: boolean;
}

// The transaction snapshot (REPEATABLE READ) is shared by all statements of a read, so the
// watermark, the changes and their decoded rows are consistent even while retention deletes.
const HEAD_SQL = `
select pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::text as xmin,
       p.xid::text as purged_xid, p.id::text as purged_id,
       exists (
         select 1 from sluice.change_log c
          where c.xid >= pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())
       )::text as waiting
  from sluice.change_log_purged p`;

const READ_SQL = `
select c.id::text, c.xid::text, c.schema, c."table", c.op, c.pk::text,
       pg_catalog.array_to_json(c.changed_columns)::text, c.actor, c.tenant_id, c.trace_id,
       c.committed_at::text,
       exists (
         select 1
           from pg_catalog.pg_class k
           join pg_catalog.pg_namespace n on n.oid = k.relnamespace
          where n.nspname = c.schema and k.relname = c."table" and k.relkind in ('r', 'p')
            and pg_catalog.has_schema_privilege(n.oid, 'USAGE')
       )::text
  from sluice.change_log c
 where (c.xid, c.id) > ($1::xid8, $2::bigint)
   and c.xid < pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())
   and ($3::pg_snapshot is null or not pg_catalog.pg_visible_in_snapshot(c.xid, $3::pg_snapshot))
 order by c.xid, c.id
 limit $4`;

type LogRow = [
  id: string,
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
  decodable: string,
];

interface DecodedRows {
  readonly fields: readonly ChangeField[];
  readonly byId: Map<string, { record: (string | null)[]; old: (string | null)[] }>;
}

function maxPosition(a: Position, b: Position): Position {
  return comparePositions(a, b) >= 0 ? a : b;
}

/**
 * Reads up to `limit` committed changes after `after`, in (xid, id) order, only from transactions
 * below pg_snapshot_xmin(pg_current_snapshot()) — so a change whose transaction commits later but has a
 * lower position is never skipped. When fewer than `limit` are returned, `until` advances to (xmin, 0).
 * When `after.snapshot` is set, changes whose xid is visible in that snapshot are skipped, and
 * `until` (and each change's position) keeps the snapshot while its xid is below snapshot.xmax.
 * Rows are decoded with jsonb_populate_record(null::<table>, record) as exact PostgreSQL text (pool
 * from @sluice/db createPool). Changes of tables that no longer exist are skipped.
 *
 * Cancellation: `signal` is checked between the statements of the read.
 * @throws SluiceError OUT_OF_RANGE reason SLUICE_POSITION_EXPIRED when `after` is older than the
 *   retention watermark.
 */
export async function readChanges(
  pool: pg.Pool,
  after: Position,
  limit: number,
  options: ReadChangesOptions = {},
): Promise<ChangeBatch> {
  return (await readChangesDetailed(pool, after, limit, options)).batch;
}

/** readChanges, also telling whether more changes are ready or waiting (for the feed). */
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

async function readOnce(
  pool: pg.Pool,
  after: Position,
  limit: number,
  { signal, logger }: ReadChangesOptions,
): Promise<ReadResult> {
  throwIfAborted(signal);
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    const snapshot = after.snapshot;
    const [, head, read] = await Promise.all([
      client.query('begin isolation level repeatable read read only'),
      client.query<{ xmin: string; purged_xid: string | null; purged_id: string | null; waiting: string }>(
        HEAD_SQL,
      ),
      client.query<LogRow>({
        text: READ_SQL,
        values: [
          after.xid.toString(),
          after.id.toString(),
          snapshot ? formatSnapshot(snapshot) : null,
          limit,
        ],
        rowMode: 'array',
      }),
    ]);
    const h = head.rows[0];
    if (!h) throw new SluiceError('INTERNAL', 'sluice.change_log_purged has no row');
    if (h.purged_xid !== null && h.purged_id !== null) {
      const purged = { xid: BigInt(h.purged_xid), id: BigInt(h.purged_id) };
      if (comparePositions(after, purged) < 0) {
        throw new SluiceError(
          'OUT_OF_RANGE',
          'The position is older than the change log retention: start again from a snapshot',
          { reason: 'SLUICE_POSITION_EXPIRED' },
        );
      }
    }
    throwIfAborted(signal);

    const rows = read.rows;
    const tables = new Map<string, { schema: string; table: string; ids: string[] }>();
    for (const row of rows) {
      if (row[11] !== 'true') continue;
      const key = `${row[2]}.${row[3]}`;
      let entry = tables.get(key);
      if (!entry) {
        entry = { schema: row[2], table: row[3], ids: [] };
        tables.set(key, entry);
      }
      entry.ids.push(row[0]);
    }
    const decoded = new Map<string, DecodedRows>();
    await Promise.all(
      [...tables].map(async ([key, t]) => {
        decoded.set(key, await decodeRows(client, t.schema, t.table, t.ids));
      }),
    );
    await client.query('commit');

    const keepSnapshot = (xid: bigint): Snapshot | undefined =>
      snapshot !== undefined && xid < snapshot.xmax ? snapshot : undefined;
    const changes: Change[] = [];
    for (const row of rows) {
      const xid = BigInt(row[1]);
      const id = BigInt(row[0]);
      const rowsOfTable = decoded.get(`${row[2]}.${row[3]}`);
      const values = rowsOfTable?.byId.get(row[0]);
      if (!rowsOfTable || !values) {
        logger?.debug(
          { schema: row[2], table: row[3], id: row[0] },
          'change of a table that no longer exists skipped',
        );
        continue;
      }
      const op = row[4];
      const record = op === 'DELETE' ? values.old : values.record;
      const pkKeys = new Set(Object.keys(JSON.parse(row[5]) as Record<string, unknown>));
      const pk: Record<string, string | null> = {};
      rowsOfTable.fields.forEach((f, i) => {
        if (pkKeys.has(f.name)) pk[f.name] = record[i] ?? null;
      });
      const s = keepSnapshot(xid);
      changes.push({
        position: s ? { xid, id, snapshot: s } : { xid, id },
        schema: row[2],
        table: row[3],
        op,
        record,
        oldRecord: op === 'INSERT' ? null : values.old,
        fields: rowsOfTable.fields,
        pk,
        changedColumns: JSON.parse(row[6]) as string[],
        actor: row[7],
        tenantId: row[8],
        traceId: row[9],
        committedAt: row[10],
      });
    }

    const full = rows.length === limit;
    const last = rows[rows.length - 1];
    const reached: Position =
      full && last
        ? { xid: BigInt(last[1]), id: BigInt(last[0]) }
        : maxPosition({ xid: after.xid, id: after.id }, { xid: BigInt(h.xmin), id: 0n });
    const s = keepSnapshot(reached.xid);
    return {
      batch: { changes, until: s ? { ...reached, snapshot: s } : reached },
      full,
      waiting: h.waiting === 'true',
    };
  } catch (error) {
    broken = error as Error;
    await client.query('rollback').catch(() => {});
    throw error;
  } finally {
    // A failed connection must not go back to the pool; a failed statement leaves it usable.
    const fatal =
      broken !== undefined &&
      (broken as { code?: string }).code === undefined &&
      !(broken instanceof SluiceError);
    client.release(fatal ? broken : undefined);
  }
}

async function decodeRows(
  client: pg.PoolClient,
  schema: string,
  table: string,
  ids: string[],
): Promise<DecodedRows> {
  const type = `${pg.escapeIdentifier(schema)}.${pg.escapeIdentifier(table)}`;
  const result = await client.query<(string | null)[]>({
    text: `select c.id::text, r.*, o.*
             from sluice.change_log c
             left join lateral pg_catalog.jsonb_populate_record(null::${type}, c.record) r on true
             left join lateral pg_catalog.jsonb_populate_record(null::${type}, c.old_record) o on true
            where c.id = any($1::bigint[])`,
    values: [ids],
    rowMode: 'array',
  });
  const width = (result.fields.length - 1) / 2;
  const fields = result.fields.slice(1, 1 + width).map((f) => ({ name: f.name, dataTypeID: f.dataTypeID }));
  const byId = new Map<string, { record: (string | null)[]; old: (string | null)[] }>();
  for (const row of result.rows) {
    byId.set(row[0] as string, { record: row.slice(1, 1 + width), old: row.slice(1 + width) });
  }
  return { fields, byId };
}

/**
 * The position a subscriber starting "now" resumes from: (xmin, 0) of the current snapshot, or the
 * retention watermark when that is later (so reading from it never reports an expired position).
 *
 * Cancellation: checked before the query.
 */
export async function currentPosition(pool: pg.Pool, { signal }: AbortOptions = {}): Promise<Position> {
  throwIfAborted(signal);
  const { rows } = await pool.query<{ xmin: string; purged_xid: string | null; purged_id: string | null }>(
    `select pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::text as xmin,
            p.xid::text as purged_xid, p.id::text as purged_id
       from sluice.change_log_purged p`,
  );
  const h = rows[0];
  if (!h) throw new SluiceError('INTERNAL', 'sluice.change_log_purged has no row');
  const now: Position = { xid: BigInt(h.xmin), id: 0n };
  if (h.purged_xid === null || h.purged_id === null) return now;
  return maxPosition(now, { xid: BigInt(h.purged_xid), id: BigInt(h.purged_id) });
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
