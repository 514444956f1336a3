import { abortError, type FieldViolation, SluiceError } from '@sluice/core';

/** The fields node-postgres copies from a PostgreSQL ErrorResponse. */
interface PgErrorFields {
  code?: string;
  message?: string;
  column?: string;
  constraint?: string;
  table?: string;
  schema?: string;
}

function isPgError(error: unknown): error is Error & PgErrorFields {
  return error instanceof Error && typeof (error as PgErrorFields).code === 'string';
}

function violation(field: string | undefined, description: string): FieldViolation[] {
  return field ? [{ field, description }] : [];
}

/**
 * Maps an error thrown by node-postgres (or the pool) to a SluiceError, following DESIGN.md's
 * SQLSTATE table. A SluiceError passes through unchanged; an abort (the call's `signal`) becomes
 * CANCELLED or DEADLINE_EXCEEDED; messages that could reveal internals are replaced by generic
 * ones, with the original kept as `cause` for the log.
 */
export function mapPgError(error: unknown, signal?: AbortSignal): SluiceError {
  if (error instanceof SluiceError) return error;
  if (signal?.aborted) return abortError(signal);
  if (!isPgError(error)) {
    const message = error instanceof Error ? error.message : String(error);
    if (
      /timeout exceeded when trying to connect|Connection terminated|ECONNREFUSED|ECONNRESET/i.test(message)
    ) {
      return new SluiceError('UNAVAILABLE', 'The database is unavailable; retry later', {
        reason: 'SLUICE_DATABASE_UNAVAILABLE',
        cause: error,
      });
    }
    return new SluiceError('INTERNAL', 'Internal error', { cause: error });
  }
  const code = error.code ?? '';
  const cause = error;
  const field = error.column ?? error.constraint;
  switch (code) {
    case '23505':
      return new SluiceError(
        'ALREADY_EXISTS',
        `A row with the same key already exists (${error.constraint})`,
        {
          reason: 'SLUICE_UNIQUE_VIOLATION',
          violations: violation(error.constraint, 'unique constraint'),
          metadata: { constraint: error.constraint ?? '' },
          cause,
        },
      );
    case '23503':
    case '23514':
    case '23502':
    case '23P01': {
      const what = {
        '23503': 'foreign key',
        '23514': 'check constraint',
        '23502': 'not-null constraint',
        '23P01': 'exclusion constraint',
      }[code];
      return new SluiceError('FAILED_PRECONDITION', `The row violates a ${what} (${field ?? 'unknown'})`, {
        reason: code === '23502' ? 'SLUICE_NOT_NULL_VIOLATION' : 'SLUICE_CONSTRAINT_VIOLATION',
        violations: violation(field, `${what} violated`),
        metadata: { constraint: error.constraint ?? '', column: error.column ?? '' },
        cause,
      });
    }
    case '42501':
      return new SluiceError(
        'PERMISSION_DENIED',
        /row-level security/i.test(error.message)
          ? 'The row is not allowed by the row level security policy'
          : 'Permission denied',
        {
          reason: /row-level security/i.test(error.message)
            ? 'SLUICE_RLS_VIOLATION'
            : 'SLUICE_PERMISSION_DENIED',
          cause,
        },
      );
    case '0A000':
      if (/cached plan must not change result type/.test(error.message)) {
        // A prepared statement outlived a schema change; the catalog reload clears them.
        return new SluiceError('ABORTED', 'The schema changed while the call ran; retry it', {
          reason: 'SLUICE_SCHEMA_CHANGED',
          cause,
        });
      }
      break;
    case '40001':
    case '40P01':
      return new SluiceError('ABORTED', 'The transaction conflicted with another; retry it', {
        reason: code === '40001' ? 'SLUICE_SERIALIZATION_FAILURE' : 'SLUICE_DEADLOCK',
        cause,
      });
    case '57014':
      return new SluiceError('DEADLINE_EXCEEDED', 'The statement ran past its time limit', {
        reason: 'SLUICE_STATEMENT_TIMEOUT',
        cause,
      });
    case 'P0001':
      // raise_exception: the function's own message is meant for the caller.
      return new SluiceError('FAILED_PRECONDITION', error.message, { reason: 'SLUICE_RAISED', cause });
    case '25006':
      return new SluiceError('PERMISSION_DENIED', 'The operation writes in a read-only call', {
        reason: 'SLUICE_READ_ONLY',
        cause,
      });
    case '42703':
    case '42P01':
    case '42883':
      return new SluiceError('INVALID_ARGUMENT', 'The request names something that does not exist', {
        reason: 'SLUICE_UNKNOWN_NAME',
        cause,
      });
  }
  if (code.startsWith('22')) {
    // Data exceptions describe the client's own values ("invalid input syntax for type uuid").
    return new SluiceError('INVALID_ARGUMENT', error.message, {
      reason: 'SLUICE_INVALID_VALUE',
      violations: violation(field, error.message),
      cause,
    });
  }
  if (code.startsWith('08') || code === '53300' || code === '57P01' || code === '57P03') {
    return new SluiceError('UNAVAILABLE', 'The database is unavailable; retry later', {
      reason: 'SLUICE_DATABASE_UNAVAILABLE',
      cause,
    });
  }
  return new SluiceError('INTERNAL', 'Internal error', { cause });
}
