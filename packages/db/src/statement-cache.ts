import type pg from 'pg';

/**
 * Named prepared statements per connection, bounded. Preparing a request's SQL once per
 * connection spares PostgreSQL the parse and plan of every call (about a quarter of the data
 * service's throughput on a primary-key Select under RLS). PostgreSQL keeps prepared statements
 * per session, so each connection keeps at most `capacity` of them, least recently used first
 * out (DEALLOCATE, pipelined ahead of the next query).
 *
 * After DDL, a prepared statement whose result shape changed fails once ("cached plan must not
 * change result type"), so `invalidate()` — called when the schema catalog reloads — makes every
 * connection drop all its statements (DEALLOCATE ALL) before its next query.
 */
export class StatementCache {
  private generation = 0;
  private readonly perClient = new WeakMap<pg.PoolClient, ClientStatements>();

  constructor(private readonly capacity: number) {}

  /** Forget every prepared statement on every connection (lazily, on each one's next use). */
  invalidate(): void {
    this.generation++;
  }

  /**
   * Call on checkout, before BEGIN: after `invalidate()`, drops the connection's statements
   * (DEALLOCATE ALL outside any transaction, so an aborted transaction cannot make it fail).
   */
  beforeRequest(client: pg.PoolClient): void {
    const entry = this.perClient.get(client);
    if (entry && entry.generation !== this.generation) {
      deallocate(client, 'deallocate all');
      forgetAll(client);
      entry.generation = this.generation;
      entry.names.clear();
    }
  }

  /**
   * The statement name for `sql` on `client` (undefined when preparing is off), preparing it on
   * first use. Evicting the least recently used statement issues a pipelined DEALLOCATE ahead of
   * the caller's query. Names are never reused on a connection, so a DEALLOCATE that fails (in an
   * aborted transaction) only leaves an unused statement behind.
   */
  nameFor(client: pg.PoolClient, sql: string): string | undefined {
    if (this.capacity <= 0) return undefined;
    let entry = this.perClient.get(client);
    if (!entry) {
      entry = { generation: this.generation, names: new Map(), next: 0 };
      this.perClient.set(client, entry);
    }
    const existing = entry.names.get(sql);
    if (existing) {
      // Map order is insertion order: re-inserting marks it most recently used.
      entry.names.delete(sql);
      entry.names.set(sql, existing);
      return existing;
    }
    if (entry.names.size >= this.capacity) {
      const [oldestSql, oldestName] = entry.names.entries().next().value as [string, string];
      entry.names.delete(oldestSql);
      deallocate(client, `deallocate ${oldestName}`);
      forget(client, oldestName);
    }
    const name = `sluice_${entry.next++}`;
    entry.names.set(sql, name);
    return name;
  }
}

interface ClientStatements {
  generation: number;
  /** SQL text -> statement name, least recently used first. */
  readonly names: Map<string, string>;
  /** Next statement number: grows for the life of the connection. */
  next: number;
}

interface PgConnectionInternals {
  connection?: { parsedStatements?: Record<string, string> };
}

function deallocate(client: pg.PoolClient, sql: string): void {
  client.query(sql).catch(() => {});
}

// node-postgres remembers which names it has prepared on a connection (and skips Parse for
// them); after DEALLOCATE it must forget them too, or it would bind a statement that is gone.
function forget(client: pg.PoolClient, name: string): void {
  const parsed = (client as unknown as PgConnectionInternals).connection?.parsedStatements;
  if (parsed) delete parsed[name];
}

function forgetAll(client: pg.PoolClient): void {
  const parsed = (client as unknown as PgConnectionInternals).connection?.parsedStatements;
  if (!parsed) return;
  for (const name of Object.keys(parsed)) if (name.startsWith('sluice')) delete parsed[name];
}
