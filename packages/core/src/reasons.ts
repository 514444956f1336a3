/**
 * Every `reason` a Sluice error can carry (google.rpc.ErrorInfo.reason): one closed list, so a
 * client can rely on the strings and a new one is added here, documented, or not at all
 * (SluiceError's `reason` only takes these). Each entry names its gRPC status; the packages keep
 * named subsets where they throw them (AuthReason, ChangesReason, LimitReason, MigrateReason).
 */
export const Reason = {
  // Requests that name or shape something wrong: INVALID_ARGUMENT, with the field in BadRequest.
  /** INVALID_ARGUMENT: no such table (or not in an exposed schema). */
  unknownTable: 'SLUICE_UNKNOWN_TABLE',
  /** INVALID_ARGUMENT: no such column in the table. */
  unknownColumn: 'SLUICE_UNKNOWN_COLUMN',
  /** INVALID_ARGUMENT: no such function (Call). */
  unknownFunction: 'SLUICE_UNKNOWN_FUNCTION',
  /** INVALID_ARGUMENT: the function has no argument of that name. */
  unknownArgument: 'SLUICE_UNKNOWN_ARGUMENT',
  /** INVALID_ARGUMENT: DescribeSchema asked for a schema that is not exposed. */
  unknownSchema: 'SLUICE_UNKNOWN_SCHEMA',
  /** INVALID_ARGUMENT: an operator the service does not know. */
  unknownOperator: 'SLUICE_UNKNOWN_OPERATOR',
  /** INVALID_ARGUMENT: an events operation (INSERT/UPDATE/DELETE) the service does not know. */
  unknownOperation: 'SLUICE_UNKNOWN_OPERATION',
  /** INVALID_ARGUMENT: the database found no object of a name given as a value (PostgreSQL 42703, 42P01, 42883, 42704, 3F000). */
  unknownName: 'SLUICE_UNKNOWN_NAME',
  /** INVALID_ARGUMENT: a MATCH condition's text search configuration does not exist or is malformed. */
  unknownTextSearchConfig: 'SLUICE_UNKNOWN_TEXT_SEARCH_CONFIG',
  /** INVALID_ARGUMENT: the named arguments match no single signature of the function. */
  ambiguousFunction: 'SLUICE_AMBIGUOUS_FUNCTION',
  /** INVALID_ARGUMENT: the arguments given do not fit the function. */
  argumentsMismatch: 'SLUICE_ARGUMENTS_MISMATCH',
  /** INVALID_ARGUMENT: an argument is named twice. */
  duplicateArgument: 'SLUICE_DUPLICATE_ARGUMENT',
  /** INVALID_ARGUMENT: a column is named twice. */
  duplicateColumn: 'SLUICE_DUPLICATE_COLUMN',
  /** INVALID_ARGUMENT: a table is listed twice in one subscription. */
  duplicateTable: 'SLUICE_DUPLICATE_TABLE',
  /** INVALID_ARGUMENT: a table name is required. */
  tableRequired: 'SLUICE_TABLE_REQUIRED',
  /** INVALID_ARGUMENT: Subscribe needs at least one table. */
  tablesRequired: 'SLUICE_TABLES_REQUIRED',
  /** INVALID_ARGUMENT: a function name is required. */
  functionRequired: 'SLUICE_FUNCTION_REQUIRED',
  /** INVALID_ARGUMENT: Insert needs columns. */
  columnsRequired: 'SLUICE_COLUMNS_REQUIRED',
  /** INVALID_ARGUMENT: Insert needs rows. */
  rowsRequired: 'SLUICE_ROWS_REQUIRED',
  /** INVALID_ARGUMENT: Update needs `set`. */
  setRequired: 'SLUICE_SET_REQUIRED',
  /** INVALID_ARGUMENT: Update and Delete need a filter (an empty `and` means every row). */
  filterRequired: 'SLUICE_FILTER_REQUIRED',
  /** INVALID_ARGUMENT: SelectStream needs a query. */
  queryRequired: 'SLUICE_QUERY_REQUIRED',
  /** INVALID_ARGUMENT: a Transaction needs operations. */
  operationsRequired: 'SLUICE_OPERATIONS_REQUIRED',
  /** INVALID_ARGUMENT: a Transaction operation sets none of select, insert, update, delete, call. */
  emptyOperation: 'SLUICE_EMPTY_OPERATION',
  /** INVALID_ARGUMENT: a filter node sets none of and, or, not, condition. */
  emptyFilter: 'SLUICE_EMPTY_FILTER',
  /** INVALID_ARGUMENT: an upsert needs its conflict target. */
  conflictTargetRequired: 'SLUICE_CONFLICT_TARGET_REQUIRED',
  /** INVALID_ARGUMENT: an upsert MERGE has no column to update. */
  nothingToUpdate: 'SLUICE_NOTHING_TO_UPDATE',
  /** INVALID_ARGUMENT: an Insert row has another number of values than the columns. */
  rowWidthMismatch: 'SLUICE_ROW_WIDTH_MISMATCH',
  /** INVALID_ARGUMENT: a value of the wrong kind for its column or argument. */
  wrongType: 'SLUICE_WRONG_TYPE',
  /** INVALID_ARGUMENT: a value its type refuses (PostgreSQL class 22 included). */
  invalidValue: 'SLUICE_INVALID_VALUE',
  /** INVALID_ARGUMENT: a string that is not valid UTF-8. */
  invalidUtf8: 'SLUICE_INVALID_UTF8',
  /** INVALID_ARGUMENT: the request could not be decoded. */
  malformedRequest: 'SLUICE_MALFORMED_REQUEST',
  /** INVALID_ARGUMENT: an operator that does not apply to the column's type. */
  operatorNotApplicable: 'SLUICE_OPERATOR_NOT_APPLICABLE',
  /** INVALID_ARGUMENT: an operator event filters do not take. */
  operatorNotSupported: 'SLUICE_OPERATOR_NOT_SUPPORTED',
  /** INVALID_ARGUMENT: the operator needs a non-null value (use IS for null). */
  valueRequired: 'SLUICE_VALUE_REQUIRED',
  /** INVALID_ARGUMENT: a filter nested too deep or with too many nodes (also a request too deep to decode). */
  filterTooComplex: 'SLUICE_FILTER_TOO_COMPLEX',
  /** INVALID_ARGUMENT: too many values (IN list, rows). */
  tooManyValues: 'SLUICE_TOO_MANY_VALUES',
  /** INVALID_ARGUMENT: too many operations in one Transaction. */
  tooManyOperations: 'SLUICE_TOO_MANY_OPERATIONS',
  /** INVALID_ARGUMENT: too many tables in one subscription. */
  tooManyTables: 'SLUICE_TOO_MANY_TABLES',
  /** INVALID_ARGUMENT: the page token is malformed or forged. */
  invalidPageToken: 'SLUICE_INVALID_PAGE_TOKEN',
  /** INVALID_ARGUMENT: the page token belongs to another query. */
  pageTokenMismatch: 'SLUICE_PAGE_TOKEN_MISMATCH',
  /** INVALID_ARGUMENT: a page token and an offset together. */
  pageTokenWithOffset: 'SLUICE_PAGE_TOKEN_WITH_OFFSET',
  /** INVALID_ARGUMENT: a generated column cannot be written (PostgreSQL 428C9 included). */
  columnNotWritable: 'SLUICE_COLUMN_NOT_WRITABLE',
  /** INVALID_ARGUMENT: a subquery or function returned more than one row where one was expected (21000). */
  cardinalityViolation: 'SLUICE_CARDINALITY_VIOLATION',
  /** INVALID_ARGUMENT: something PostgreSQL does not support for this request (classes 42, 0A). */
  notSupported: 'SLUICE_NOT_SUPPORTED',
  /** INVALID_ARGUMENT: a PostgreSQL limit was exceeded (class 54, e.g. too many columns or arguments). */
  limitExceeded: 'SLUICE_LIMIT_EXCEEDED',

  // What the caller may not do.
  /** PERMISSION_DENIED: the role may not use the table that way. */
  tableNotAllowed: 'SLUICE_TABLE_NOT_ALLOWED',
  /** PERMISSION_DENIED: the role may not use the column that way. */
  columnNotAllowed: 'SLUICE_COLUMN_NOT_ALLOWED',
  /** PERMISSION_DENIED: PostgreSQL refused a privilege (42501). */
  permissionDenied: 'SLUICE_PERMISSION_DENIED',
  /** PERMISSION_DENIED: a row-level security policy refused the row. */
  rlsViolation: 'SLUICE_RLS_VIOLATION',
  /** PERMISSION_DENIED: a read-only call tried to write (25006). */
  readOnly: 'SLUICE_READ_ONLY',

  // The data does not allow it.
  /** ALREADY_EXISTS: a row with the same unique key exists. */
  uniqueViolation: 'SLUICE_UNIQUE_VIOLATION',
  /** FAILED_PRECONDITION: a foreign key, check or exclusion constraint (class 23, 27, 44). */
  constraintViolation: 'SLUICE_CONSTRAINT_VIOLATION',
  /** FAILED_PRECONDITION: a required column was left null (23502). */
  notNullViolation: 'SLUICE_NOT_NULL_VIOLATION',
  /** FAILED_PRECONDITION: more rows match than `max_affected`; nothing changed. */
  maxAffectedExceeded: 'SLUICE_MAX_AFFECTED_EXCEEDED',
  /** FAILED_PRECONDITION: a function raised an exception (P0001); its message is kept. */
  raised: 'SLUICE_RAISED',
  /** FAILED_PRECONDITION: a function failed otherwise (its message hidden, SQLSTATE in metadata). */
  functionFailed: 'SLUICE_FUNCTION_FAILED',
  /** FAILED_PRECONDITION: an object is not in the state the call needs (class 55). */
  objectNotReady: 'SLUICE_OBJECT_NOT_READY',
  /** FAILED_PRECONDITION: the table's change capture is off (sluice.enable_changes). */
  captureDisabled: 'SLUICE_CAPTURE_DISABLED',
  /** FAILED_PRECONDITION: an events snapshot would hold more rows than allowed; narrow the filter. */
  snapshotTooLarge: 'SLUICE_SNAPSHOT_TOO_LARGE',

  // Retry.
  /** ABORTED: the transaction conflicted with another (serialization failure, 40001); retry. */
  serializationFailure: 'SLUICE_SERIALIZATION_FAILURE',
  /** ABORTED: the transaction was chosen to break a deadlock (40P01); retry. */
  deadlock: 'SLUICE_DEADLOCK',
  /** ABORTED: the transaction was rolled back (class 40); retry. */
  transactionRolledBack: 'SLUICE_TRANSACTION_ROLLED_BACK',
  /** ABORTED: a lock could not be taken in time (55P03); retry. */
  lockNotAvailable: 'SLUICE_LOCK_NOT_AVAILABLE',
  /** ABORTED: the schema changed while the call ran (a cached plan went stale); retry. */
  schemaChanged: 'SLUICE_SCHEMA_CHANGED',
  /** DEADLINE_EXCEEDED: the statement or transaction ran past its time limit. */
  statementTimeout: 'SLUICE_STATEMENT_TIMEOUT',
  /** UNAVAILABLE: the database cannot be reached; retry later. */
  databaseUnavailable: 'SLUICE_DATABASE_UNAVAILABLE',
  /**
   * UNAVAILABLE: connecting to the database failed repeatedly, so the pool's circuit breaker
   * refuses calls without trying until a probe connects again (DB_BREAKER_RESET_MS); retry later.
   */
  circuitOpen: 'SLUICE_CIRCUIT_OPEN',
  /** UNAVAILABLE: the server is shutting down; reconnect (events: from the position in metadata). */
  shuttingDown: 'SLUICE_SHUTTING_DOWN',
  /** UNAVAILABLE: delivering changes to this stream failed; resume from the position in metadata. */
  dispatchFailed: 'SLUICE_DISPATCH_FAILED',
  /** RESOURCE_EXHAUSTED: the events client read too slowly; resume from the position in metadata. */
  slowConsumer: 'SLUICE_SLOW_CONSUMER',

  // Generic: a status raised without a more precise reason carries SLUICE_<status>.
  cancelled: 'SLUICE_CANCELLED',
  invalidArgument: 'SLUICE_INVALID_ARGUMENT',
  deadlineExceeded: 'SLUICE_DEADLINE_EXCEEDED',
  notFound: 'SLUICE_NOT_FOUND',
  alreadyExists: 'SLUICE_ALREADY_EXISTS',
  resourceExhausted: 'SLUICE_RESOURCE_EXHAUSTED',
  failedPrecondition: 'SLUICE_FAILED_PRECONDITION',
  aborted: 'SLUICE_ABORTED',
  outOfRange: 'SLUICE_OUT_OF_RANGE',
  unimplemented: 'SLUICE_UNIMPLEMENTED',
  internal: 'SLUICE_INTERNAL',
  unavailable: 'SLUICE_UNAVAILABLE',
  unauthenticated: 'SLUICE_UNAUTHENTICATED',

  // The named subsets of the packages (see their doc comments there).
  /** Limits (LimitReason): per identity / in total (RESOURCE_EXHAUSTED), stalled streams, snapshot time limit. */
  identityLimit: 'SLUICE_IDENTITY_LIMIT',
  totalLimit: 'SLUICE_TOTAL_LIMIT',
  streamStalled: 'SLUICE_STREAM_STALLED',
  snapshotTimeout: 'SLUICE_SNAPSHOT_TIMEOUT',
  /** Tokens (AuthReason, @sluice/auth): UNAUTHENTICATED unless noted there. */
  tokenMissing: 'SLUICE_TOKEN_MISSING',
  tokenMalformed: 'SLUICE_TOKEN_MALFORMED',
  tokenInvalid: 'SLUICE_TOKEN_INVALID',
  tokenAlgorithmNotAllowed: 'SLUICE_TOKEN_ALGORITHM_NOT_ALLOWED',
  tokenKeyNotFound: 'SLUICE_TOKEN_KEY_NOT_FOUND',
  tokenExpired: 'SLUICE_TOKEN_EXPIRED',
  tokenNotYetValid: 'SLUICE_TOKEN_NOT_YET_VALID',
  tokenClaimInvalid: 'SLUICE_TOKEN_CLAIM_INVALID',
  roleNotAllowed: 'SLUICE_ROLE_NOT_ALLOWED',
  jwksUnavailable: 'SLUICE_JWKS_UNAVAILABLE',
  /** Change positions (ChangesReason, @sluice/changes). */
  invalidPosition: 'SLUICE_INVALID_POSITION',
  positionExpired: 'SLUICE_POSITION_EXPIRED',
  changeLogRegressed: 'SLUICE_CHANGE_LOG_REGRESSED',
  /** Migrations (@sluice/migrate). */
  migrationBadArgument: 'SLUICE_MIGRATION_BAD_ARGUMENT',
  migrationDirty: 'SLUICE_MIGRATION_DIRTY',
  migrationExists: 'SLUICE_MIGRATION_EXISTS',
  migrationFailed: 'SLUICE_MIGRATION_FAILED',
  migrationNotFound: 'SLUICE_MIGRATION_NOT_FOUND',
  migrationNoSchema: 'SLUICE_MIGRATION_NO_SCHEMA',
} as const;

export type Reason = (typeof Reason)[keyof typeof Reason];
