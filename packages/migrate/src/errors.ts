import { SluiceError } from '@sluice/core';

/** The refusal every verb but `force` gives on a dirty database (golang-migrate's ErrDirty). */
export function dirtyDatabase(version: number | null, table: string): SluiceError {
  const shown = version ?? -1;
  return new SluiceError(
    'FAILED_PRECONDITION',
    `Database is dirty at version ${shown} (${table}): a migration failed part-way. ` +
      `Fix the database by hand, then run "force ${shown}" (or the version it is actually at).`,
    { reason: 'SLUICE_MIGRATION_DIRTY', metadata: { version: String(shown), table } },
  );
}

export function notFound(message: string, metadata?: Record<string, string>): SluiceError {
  return new SluiceError('NOT_FOUND', message, {
    reason: 'SLUICE_MIGRATION_NOT_FOUND',
    ...(metadata ? { metadata } : {}),
  });
}

export function badArgument(message: string, field: string): SluiceError {
  return new SluiceError('INVALID_ARGUMENT', message, {
    reason: 'SLUICE_MIGRATION_BAD_ARGUMENT',
    violations: [{ field, description: message }],
  });
}
