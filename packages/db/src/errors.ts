import { abortError, type FieldViolation, SluiceError } from '@sluice/core';

/** The fields node-postgres copies from a PostgreSQL ErrorResponse. */
interface PgErrorFields {
  code?: string;
  severity?: string;
  message?: string;
  column?: string;
  constraint?: string;
  table?: string;
  schema?: string;
}

/**
 * An ErrorResponse from the server (five-character SQLSTATE and a severity). Node's system
 * errors also carry a string `code` (ECONNREFUSED, ENOENT …) and must not be read as SQLSTATEs.
 */
function isPgError(error: unknown): error is Error & PgErrorFields {
  if (!(error instanceof Error)) return false;
  const { code, severity } = error as PgErrorFields;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && typeof severity === 'string';
}

function violation(field: string | undefined, description: string): FieldViolation[] {
  return field ? [{ field, description }] : [];
}

// node-postgres' and pg-pool's own messages when the connection cannot be made or is lost.
const CONNECTION_LOST =
  /timeout exceeded when trying to connect|Connection terminated|connection timeout|Client has encountered a connection error|Client was closed|not queryable|Cannot use a pool after calling end|ECONNREFUSED|ECONNRESET|ENOENT|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|ENOTFOUND|socket hang up|read ECONN|write EPIPE|terminating connection/i;

/** A system error code (Node's net layer) that means the server could not be reached or went away. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ENOENT', // no socket file: nothing listens on that Unix socket path
  'EACCES', // a socket file we may not open
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'ENOTFOUND',
]);

function unavailable(cause: unknown): SluiceError {
  return new SluiceError('UNAVAILABLE', 'The database is unavailable; retry later', {
    reason: 'SLUICE_DATABASE_UNAVAILABLE',
    cause,
  });
}

/**
 * Maps an error thrown by node-postgres (or the pool) to a SluiceError, following docs/design.md's
 * SQLSTATE table. A SluiceError passes through unchanged; an abort (the call's `signal`) becomes
 * CANCELLED or DEADLINE_EXCEEDED; a connection that cannot be made or is lost (refused, no
 * socket file, reset, terminated, pool timeout) becomes UNAVAILABLE. Every SQLSTATE class a
 * request can cause maps to a status that says so; INTERNAL is left for our own bugs (a class
 * only broken SQL of ours can raise). Messages that could reveal internals are replaced by
 * generic ones, with the original kept as `cause` for the log.
 */
export function mapPgError(error: unknown, signal?: AbortSignal): SluiceError {
  if (error instanceof SluiceError) return error;
  if (signal?.aborted) return abortError(signal);
  if (!isPgError(error)) {
    const code = (error as { code?: unknown } | undefined)?.code;
    const message = error instanceof Error ? error.message : String(error);
    if ((typeof code === 'string' && NETWORK_CODES.has(code)) || CONNECTION_LOST.test(message)) {
      return unavailable(error);
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
    case '42704': {
      // An object named by a value rather than the catalog: a MATCH condition's
      // text_search_config, cast to regconfig. The plan that sent it names the field.
      const config = /^text search configuration "(.*)" does not exist$/.exec(error.message)?.[1];
      if (config !== undefined) {
        return new SluiceError('INVALID_ARGUMENT', `Unknown text search configuration "${config}"`, {
          reason: 'SLUICE_UNKNOWN_TEXT_SEARCH_CONFIG',
          metadata: { text_search_config: config },
          cause,
        });
      }
      return new SluiceError('INVALID_ARGUMENT', error.message, { reason: 'SLUICE_UNKNOWN_NAME', cause });
    }
    case '3F000':
      return new SluiceError('INVALID_ARGUMENT', error.message, { reason: 'SLUICE_UNKNOWN_NAME', cause });
    case '25P03':
      // The server ended a transaction left idle too long, and its connection with it.
      return unavailable(cause);
    case '428C9':
      // generated_always: a value for an identity or generated column.
      return new SluiceError('INVALID_ARGUMENT', error.message, {
        reason: 'SLUICE_COLUMN_NOT_WRITABLE',
        violations: violation(field, error.message),
        cause,
      });
    case '21000':
      // cardinality_violation, e.g. an upsert naming the same key twice.
      return new SluiceError('INVALID_ARGUMENT', error.message, {
        reason: 'SLUICE_CARDINALITY_VIOLATION',
        cause,
      });
    case '55P03':
      return new SluiceError('ABORTED', 'A lock could not be taken in time; retry the call', {
        reason: 'SLUICE_LOCK_NOT_AVAILABLE',
        cause,
      });
    case '25P04':
      return new SluiceError('DEADLINE_EXCEEDED', 'The transaction ran past its time limit', {
        reason: 'SLUICE_STATEMENT_TIMEOUT',
        cause,
      });
    case '53300':
      return unavailable(cause);
  }
  const cls = code.slice(0, 2);
  switch (cls) {
    case '22':
      // Data exceptions describe the client's own values ("invalid input syntax for type uuid").
      return new SluiceError('INVALID_ARGUMENT', error.message, {
        reason: 'SLUICE_INVALID_VALUE',
        violations: violation(field, error.message),
        cause,
      });
    case '23':
    case '27':
    case '44':
      // Other integrity constraints (23001 restrict_violation …), triggered data change and
      // view WITH CHECK OPTION violations: the row is refused as it stands.
      return new SluiceError('FAILED_PRECONDITION', error.message, {
        reason: 'SLUICE_CONSTRAINT_VIOLATION',
        violations: violation(field, error.message),
        cause,
      });
    case '42':
    case '0A':
      // What the request asks cannot be done on these objects (a column of a view that cannot be
      // written, a type with no ordering …): identifiers come only from the catalog, so this is
      // the request's doing, not broken SQL of ours (42601 syntax_error stays INTERNAL).
      if (code === '42601') break;
      return new SluiceError('INVALID_ARGUMENT', error.message, { reason: 'SLUICE_NOT_SUPPORTED', cause });
    case '54':
      // program_limit_exceeded: a value or request bigger than PostgreSQL takes (array dimensions,
      // index row size, too many arguments).
      return new SluiceError('INVALID_ARGUMENT', error.message, { reason: 'SLUICE_LIMIT_EXCEEDED', cause });
    case '55':
      return new SluiceError('FAILED_PRECONDITION', error.message, {
        reason: 'SLUICE_OBJECT_NOT_READY',
        cause,
      });
    case '40':
      return new SluiceError('ABORTED', 'The transaction was rolled back; retry it', {
        reason: 'SLUICE_TRANSACTION_ROLLED_BACK',
        cause,
      });
    case '2F':
    case '38':
    case '39':
    case '2D':
    case '20':
    case '09':
    case 'P0':
      // A called function failed in its own code (no RETURN, COMMIT inside, CASE not found,
      // STRICT without exactly one row, ASSERT): the application's function, not the request
      // or Sluice. Its message may show its internals, so only the SQLSTATE goes back.
      return new SluiceError('FAILED_PRECONDITION', `The function failed (SQLSTATE ${code})`, {
        reason: 'SLUICE_FUNCTION_FAILED',
        metadata: { sqlstate: code },
        cause,
      });
    case '08':
    case '57':
    case '58':
    case '53':
    case '28':
    case '3D':
      // Connection failures, server shutdown or crash (57P01–57P05), I/O errors, exhausted server
      // resources, our login refused, database gone: nothing the caller did; retry later.
      return unavailable(cause);
  }
  return new SluiceError('INTERNAL', 'Internal error', { cause });
}
