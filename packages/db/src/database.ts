import { connect } from 'node:net';
import { abortError, type Identity, SluiceError } from '@sluice/core';
import { endSqlSpan, startSqlSpan, trackSqlSpan, writerTraceContext } from '@sluice/observability';
import type pg from 'pg';
import type { Logger } from 'pino';
import { type BreakerSettings, ConnectionBreaker, DEFAULT_BREAKER_SETTINGS } from './breaker';
import { mapPgError } from './errors';
import { releaseClient } from './session';
import { StatementCache } from './statement-cache';

/** A compiled statement: SQL text with $n placeholders and its parameters. */
export interface Statement {
  readonly sql: string;
  readonly parameters: readonly unknown[];
}

export interface ResultField {
  readonly name: string;
  readonly dataTypeID: number;
}

/** A statement's result: raw text cells (see pool.ts), rows as arrays in field order. */
export interface StatementResult {
  readonly fields: readonly ResultField[];
  readonly rows: readonly (readonly (string | null)[])[];
  readonly rowCount: number;
}

export interface RequestScope {
  readonly identity: Identity;
  readonly readOnly: boolean;
  readonly signal: AbortSignal;
  readonly deadline: Date | undefined;
  /** Trace id of the call, stored with changes the transaction writes when there is no traceparent. */
  readonly traceId?: string;
  /**
   * The caller's W3C traceparent, stored with changes when tracing is off (when it is on, the
   * statement's or the call's own span is stored instead; see writerTraceContext).
   */
  readonly traceparent?: string;
  /** REPEATABLE READ: every statement of the transaction sees one snapshot (events snapshots). */
  readonly repeatableRead?: boolean;
}

/** A request's open transaction, for handlers that need several dependent statements. */
export interface RequestTransaction {
  query(statement: Statement): Promise<StatementResult>;
}

export interface DatabaseOptions {
  /** Upper bound on any statement; the call's remaining deadline lowers it further. */
  readonly statementTimeoutMs: number;
  /** Prepared statements kept per connection (0 turns preparing off). */
  readonly preparedStatementsPerConnection?: number;
  /** The pool's circuit breaker (breaker.ts; PoolSettings.breaker); default 5 failures, 1 s. */
  readonly breaker?: BreakerSettings;
  /** For the breaker's state changes. */
  readonly logger?: Logger;
}

const SETTINGS_SQL =
  "select set_config('role', $1, true), set_config('request.jwt.claims', $2, true), " +
  "set_config('statement_timeout', $3, true), set_config('sluice.trace_id', $4, true)";

/** Prepared once per connection like the request statements (see StatementCache). */
const SETTINGS_STATEMENT = 'sluice_settings';
const BEGIN = { name: 'sluice_begin', text: 'begin' };
const BEGIN_READ_ONLY = { name: 'sluice_begin_ro', text: 'begin read only' };
const COMMIT = { name: 'sluice_commit', text: 'commit' };
const BEGIN_SNAPSHOT = { name: 'sluice_begin_rr', text: 'begin isolation level repeatable read read only' };

function beginFor(scope: RequestScope): { name: string; text: string } {
  if (scope.repeatableRead) return BEGIN_SNAPSHOT;
  return scope.readOnly ? BEGIN_READ_ONLY : BEGIN;
}

/**
 * The statement as sent: named (prepared once per connection) or, with preparing off, unnamed —
 * a transaction-mode pooler (PgBouncer) hands each transaction a different server connection,
 * where a name prepared on another one does not exist or already does.
 */
const asSent = (statement: { name: string; text: string }, prepare: boolean) =>
  prepare ? statement : { text: statement.text };

// A deadline this close is treated as already passed: the round trip alone would overrun it.
const DEADLINE_MARGIN_MS = 5;

/**
 * Runs requests the way docs/design.md's request lifecycle describes: one transaction per request,
 * the caller's role, claims and a statement timeout from its deadline set in one statement,
 * everything pipelined. An aborted call cancels its running statement on the server.
 */
export class Database {
  private readonly statements: StatementCache;
  private readonly breaker: ConnectionBreaker;
  /** DB_PREPARED_STATEMENTS > 0: request and transaction statements are prepared by name. */
  private readonly prepare: boolean;

  constructor(
    readonly pool: pg.Pool,
    private readonly options: DatabaseOptions,
  ) {
    this.statements = new StatementCache(options.preparedStatementsPerConnection ?? 200);
    this.prepare = (options.preparedStatementsPerConnection ?? 200) > 0;
    this.breaker = new ConnectionBreaker(pool, {
      ...(options.breaker ?? DEFAULT_BREAKER_SETTINGS),
      ...(options.logger ? { logger: options.logger } : {}),
    });
  }

  /** Drops prepared statements on every connection (call after DDL: the catalog reload does). */
  invalidateStatements(): void {
    this.statements.invalidate();
  }

  /**
   * Runs `statements` in one transaction in a single round trip: BEGIN, settings, the
   * statements and COMMIT are written together. Results come back in order.
   *
   * @throws SluiceError mapped from the first failing statement (the rest are rolled back).
   */
  async run(scope: RequestScope, statements: readonly Statement[]): Promise<StatementResult[]> {
    const timeoutMs = this.timeoutFor(scope);
    const client = await this.acquire(scope.signal);
    this.statements.beforeRequest(client);
    const cancel = this.cancelOnAbort(client, scope.signal);
    let failure: unknown;
    try {
      const spans = statements.map((s) => startSqlSpan(s.sql));
      const pending = corked(client, () => [
        // A single statement's span is the writer's context; several share the call's.
        ...openTransaction(
          client,
          scope,
          timeoutMs,
          writerTraceContext(callerTrace(scope), statements.length === 1 ? spans[0] : undefined),
          this.prepare,
        ),
        ...statements.map((s, i) =>
          trackSqlSpan(spans[i], client.query(arrayQuery(s, this.statements.nameFor(client, s.sql)))),
        ),
        client.query(asSent(COMMIT, this.prepare)),
      ]);
      const settled = await Promise.allSettled(pending);
      const failed = settled.find((s) => s.status === 'rejected');
      if (failed) throw failed.reason;
      return settled
        .slice(2, 2 + statements.length)
        .map((s) => toResult((s as PromiseFulfilledResult<pg.QueryArrayResult>).value));
    } catch (error) {
      failure = error;
      throw mapPgError(error, scope.signal);
    } finally {
      cancel.stop();
      releaseClient(client, failure, cancel.sent);
    }
  }

  /**
   * Runs `fn` inside one transaction, committing when it returns (or rolling back when
   * `rollback` is true, for dry runs) and rolling back when it throws.
   */
  async transaction<T>(
    scope: RequestScope,
    fn: (tx: RequestTransaction) => Promise<T>,
    { rollback = false }: { rollback?: boolean } = {},
  ): Promise<T> {
    const timeoutMs = this.timeoutFor(scope);
    const client = await this.acquire(scope.signal);
    this.statements.beforeRequest(client);
    const cancel = this.cancelOnAbort(client, scope.signal);
    let failure: unknown;
    try {
      // Sent without waiting: the first statement of `fn` follows in the same round trip.
      const [begin, settings] = corked(client, () =>
        openTransaction(client, scope, timeoutMs, writerTraceContext(callerTrace(scope)), this.prepare),
      );
      const ready = Promise.all([begin, settings]);
      ready.catch(() => {});
      const tx: RequestTransaction = {
        query: async (statement) => {
          const result = trackSqlSpan(
            startSqlSpan(statement.sql),
            client.query(arrayQuery(statement, this.statements.nameFor(client, statement.sql))),
          );
          // Both awaited together: when the connection breaks, neither rejection goes unhandled.
          const [, value] = await Promise.all([ready, result]);
          return toResult(value);
        },
      };
      let value: T;
      try {
        value = await fn(tx);
        await ready;
      } catch (error) {
        await client.query('rollback').catch((e: unknown) => {
          failure = e;
        });
        throw error;
      }
      await client.query(rollback ? 'rollback' : 'commit');
      return value;
    } catch (error) {
      // A SluiceError from `fn` is the handler's own (rolled back above); anything else may be the connection's.
      if (!(error instanceof SluiceError)) failure ??= error;
      throw mapPgError(error, scope.signal);
    } finally {
      cancel.stop();
      releaseClient(client, failure, cancel.sent);
    }
  }

  /**
   * Streams the rows of a read-only `query` in chunks of `chunkRows` through a server-side
   * cursor, in one transaction. The next chunk is fetched only when the consumer asks for it,
   * so a slow reader holds one chunk in memory, not the result. Ending the iteration early
   * (return/throw) rolls back and releases the connection.
   */
  async *stream(scope: RequestScope, query: Statement, chunkRows: number): AsyncGenerator<StatementResult> {
    const timeoutMs = this.timeoutFor(scope);
    const client = await this.acquire(scope.signal);
    this.statements.beforeRequest(client);
    const cancel = this.cancelOnAbort(client, scope.signal);
    let failure: unknown;
    let done = false;
    // One span for the cursor's whole life (declare, every fetch), with the rows it returned.
    const span = startSqlSpan(query.sql);
    let rows = 0;
    try {
      const opening = Promise.all([
        ...openTransaction(
          client,
          { ...scope, readOnly: true },
          timeoutMs,
          writerTraceContext(callerTrace(scope)),
          this.prepare,
        ),
        client.query({
          text: `declare sluice_stream no scroll cursor for ${query.sql}`,
          values: query.parameters as unknown[],
        }),
      ]);
      await opening;
      const fetch = `fetch forward ${Math.max(1, Math.floor(chunkRows))} from sluice_stream`;
      for (let first = true; ; first = false) {
        const chunk = toResult(await client.query<unknown[]>({ text: fetch, rowMode: 'array' }));
        rows += chunk.rows.length;
        // An empty chunk only when the whole result is empty (it still carries the columns): a
        // result that is a multiple of chunkRows must not end with an extra empty chunk.
        if (chunk.rows.length > 0 || first) yield chunk;
        if (chunk.rows.length < chunkRows) break;
      }
      await client.query('commit');
      done = true;
    } catch (error) {
      failure = error;
      throw mapPgError(error, scope.signal);
    } finally {
      if (!done) {
        await client.query('rollback').catch((e: unknown) => {
          failure ??= e;
        });
      }
      endSqlSpan(span, rows, failure);
      cancel.stop();
      releaseClient(client, failure, cancel.sent);
    }
  }

  async close(): Promise<void> {
    this.breaker.shutdown();
    await this.pool.end();
  }

  private timeoutFor(scope: RequestScope): number {
    if (scope.signal.aborted) throw abortError(scope.signal);
    let ms = this.options.statementTimeoutMs;
    if (scope.deadline) {
      const remaining = scope.deadline.getTime() - Date.now() - DEADLINE_MARGIN_MS;
      if (remaining <= 0) {
        throw new SluiceError('DEADLINE_EXCEEDED', 'The deadline passed before the call started');
      }
      ms = Math.min(ms, remaining);
    }
    return Math.max(1, Math.floor(ms));
  }

  /**
   * Checks out a connection through the pool's circuit breaker (UNAVAILABLE at once while it is
   * open), giving up when the call is aborted while it waits; the attempt itself runs on, so
   * its outcome (not the caller's cancellation) is what the breaker counts.
   */
  private async acquire(signal: AbortSignal): Promise<pg.PoolClient> {
    const connecting = this.breaker.connect();
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(abortError(signal));
      signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      return await Promise.race([connecting, aborted]);
    } catch (error) {
      // Hand back a connection that arrives after the caller gave up.
      connecting.then((c) => releaseClient(c)).catch(() => {});
      throw mapPgError(error, signal);
    } finally {
      if (onAbort) signal.removeEventListener('abort', onAbort);
    }
  }

  /**
   * When the call is aborted, asks the server to cancel whatever the connection is running
   * (pg_cancel_backend from a short-lived connection), so an abandoned query stops using the
   * database instead of running to completion.
   *
   * Once a cancel request is sent (`sent`), the connection must not serve another call: the
   * request travels on its own connection and may land after this call ended on its own, where
   * it would cancel the next call's statement. The caller discards such a connection instead of
   * returning it to the pool (the late request then finds its backend gone).
   */
  private cancelOnAbort(
    client: pg.PoolClient,
    signal: AbortSignal,
  ): { stop(): void; readonly sent: boolean } {
    const { processID: pid, secretKey } = client as unknown as { processID: number; secretKey: number };
    const connectionString = this.pool.options.connectionString as string;
    const state = {
      sent: false,
      stop: () => signal.removeEventListener('abort', onAbort),
    };
    const onAbort = () => {
      state.sent = true;
      void cancelBackend(connectionString, pid, secretKey);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    return state;
  }
}

/**
 * Sends PostgreSQL's protocol CancelRequest for the session `pid`/`secretKey` (what psql's
 * Ctrl-C sends) on a connection of its own, to the same host and port or Unix socket as the
 * pool. Unlike `pg_cancel_backend` it needs no login and no free server connection, and it
 * reaches the right server session through PgBouncer too, which maps its own key to the server
 * connection running the query. Best effort: the statement timeout still bounds the statement.
 */
async function cancelBackend(connectionString: string, pid: number, secretKey: number): Promise<void> {
  const url = new URL(connectionString);
  const socketDir = url.searchParams.get('host');
  const port = Number(url.port || 5432);
  const message = Buffer.alloc(16);
  message.writeInt32BE(16, 0);
  message.writeInt32BE(CANCEL_REQUEST_CODE, 4);
  message.writeInt32BE(pid, 8);
  message.writeInt32BE(secretKey, 12);
  await new Promise<void>((resolve) => {
    const socket = socketDir?.startsWith('/')
      ? connect(`${socketDir}/.s.PGSQL.${port}`)
      : connect(port, url.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1');
    // Written, then held open until the other end closes it, as libpq's PQcancel does: a pooler
    // that must first open a server connection to forward the request (PgBouncer) drops a
    // request whose client hung up meanwhile.
    socket.once('connect', () => socket.write(message));
    socket.once('close', () => resolve());
    socket.once('error', () => resolve());
    socket.setTimeout(CANCEL_TIMEOUT_MS, () => socket.destroy());
  });
}

// The CancelRequest code (1234 << 16 | 5678) and how long sending one may take.
const CANCEL_REQUEST_CODE = 80877102;
const CANCEL_TIMEOUT_MS = 5_000;

/**
 * Runs `fn` (which issues pipelined queries) with the connection's socket corked, so the many
 * small protocol messages node-postgres writes (Parse, Bind, Describe, Execute, Sync per query)
 * leave in one write instead of one syscall each: on a busy server those writes were about 40%
 * of the data service's CPU. node-postgres submits pipelined queries synchronously, so uncorking
 * right after `fn` returns flushes them all.
 */
function corked<T>(client: pg.PoolClient, fn: () => T): T {
  const stream = (
    client as unknown as {
      connection?: { stream?: NodeJS.WritableStream & { cork?(): void; uncork?(): void } };
    }
  ).connection?.stream;
  stream?.cork?.();
  try {
    return fn();
  } finally {
    stream?.uncork?.();
  }
}

/**
 * BEGIN and the one settings statement (role, claims, statement timeout, trace context) that open
 * every request transaction; issued without waiting, so what follows shares their round trip.
 * The trace context (`sluice.trace_id`, a W3C traceparent) is what the capture trigger stores
 * with each change the transaction writes.
 */
function openTransaction(
  client: pg.PoolClient,
  scope: RequestScope,
  timeoutMs: number,
  traceContext: string,
  prepare: boolean,
): [Promise<pg.QueryResult>, Promise<pg.QueryResult>] {
  const values = [
    scope.identity.role,
    JSON.stringify(scope.identity.claims),
    String(timeoutMs),
    traceContext,
  ];
  return [
    client.query(asSent(beginFor(scope), prepare)),
    client.query({ ...asSent({ name: SETTINGS_STATEMENT, text: SETTINGS_SQL }, prepare), values }),
  ];
}

/** What a request stores as its trace context when it has no span of its own (tracing off). */
function callerTrace(scope: RequestScope): string | undefined {
  return scope.traceparent ?? scope.traceId;
}

function arrayQuery(statement: Statement, name?: string): pg.QueryArrayConfig {
  return {
    ...(name ? { name } : {}),
    text: statement.sql,
    values: statement.parameters as unknown[],
    rowMode: 'array',
  };
}

function toResult(result: pg.QueryArrayResult): StatementResult {
  return {
    fields: result.fields.map((f) => ({ name: f.name, dataTypeID: f.dataTypeID })),
    rows: result.rows as (string | null)[][],
    rowCount: result.rowCount ?? result.rows.length,
  };
}
