import { decodeValue, type StatementResult, type TypeRegistry } from '@sluice/db';
import type { ResultSet, Row } from '@sluice/proto';

/**
 * Turns a statement's raw text result into the wire ResultSet: column names and types once,
 * then typed rows. `width` keeps only the first columns (Select appends hidden keyset columns).
 */
export function toResultSet(
  result: StatementResult,
  types: TypeRegistry,
  width = result.fields.length,
): ResultSet {
  const fields = result.fields.slice(0, width);
  return {
    columns: fields.map((f) => ({ name: f.name, type: types.name(f.dataTypeID) })),
    rows: result.rows.map((row) => toRow(row, fields, types)),
  };
}

export function toRow(
  row: readonly (string | null)[],
  fields: readonly { dataTypeID: number }[],
  types: TypeRegistry,
): Row {
  return { values: fields.map((f, i) => decodeValue(row[i] ?? null, f.dataTypeID, types)) };
}

export const EMPTY_RESULT: ResultSet = { columns: [], rows: [] };
