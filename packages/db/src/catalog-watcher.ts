import pg from 'pg';
import type { Logger } from 'pino';
import { loadCatalog, type SchemaCatalog } from './catalog';

export interface CatalogWatcherOptions {
  readonly connectionString: string;
  readonly schemas: readonly string[];
  readonly roles: readonly string[];
  readonly logger: Logger;
  /** Channel the core migration's event trigger notifies after DDL. */
  readonly channel?: string;
  /** Called after each successful reload (e.g. to drop prepared statements planned for the old schema). */
  readonly onReload?: () => void;
}

const RECONNECT_MIN_MS = 250;
const RECONNECT_MAX_MS = 10_000;
const DEBOUNCE_MS = 50;

/**
 * Holds the current schema catalog and reloads it after DDL, without a restart: the core
 * migration's event trigger sends NOTIFY sluice_schema, which a dedicated LISTEN session
 * receives (LISTEN needs a session, not a pooled transaction). The session reconnects with
 * backoff and reloads on reconnect, since notifications sent while it was away are lost.
 */
export class CatalogWatcher {
  private listener: pg.Client | undefined;
  private closed = false;
  private reloadTimer: NodeJS.Timeout | undefined;
  private reloading: Promise<void> | undefined;
  private reloadAgain = false;

  private constructor(
    private readonly options: CatalogWatcherOptions,
    public current: SchemaCatalog,
  ) {}

  /** Loads the catalog and starts listening. Throws when the first load fails. */
  static async start(options: CatalogWatcherOptions): Promise<CatalogWatcher> {
    const catalog = await loadCatalog(options.connectionString, options.schemas, options.roles);
    const watcher = new CatalogWatcher(options, catalog);
    await watcher.listen();
    return watcher;
  }

  /** Reloads now; concurrent calls coalesce into one more load. */
  async reload(): Promise<void> {
    if (this.reloading) {
      this.reloadAgain = true;
      return this.reloading;
    }
    this.reloading = (async () => {
      do {
        this.reloadAgain = false;
        try {
          const { connectionString, schemas, roles } = this.options;
          this.current = await loadCatalog(connectionString, schemas, roles);
          this.options.onReload?.();
          this.options.logger.info(
            { tables: [...this.current.allTables()].length },
            'schema catalog reloaded',
          );
        } catch (error) {
          this.options.logger.error({ err: error }, 'schema catalog reload failed; keeping the previous one');
        }
      } while (this.reloadAgain && !this.closed);
    })().finally(() => {
      this.reloading = undefined;
    });
    return this.reloading;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.reloadTimer);
    await this.listener?.end().catch(() => {});
    await this.reloading;
  }

  private scheduleReload(): void {
    clearTimeout(this.reloadTimer);
    this.reloadTimer = setTimeout(() => void this.reload(), DEBOUNCE_MS);
  }

  private async listen(attempt = 0): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client({
      connectionString: this.options.connectionString,
      application_name: 'sluice-catalog-listener',
    });
    client.on('notification', () => this.scheduleReload());
    client.on('error', () => {});
    client.on('end', () => {
      if (this.closed || this.listener !== client) return;
      this.listener = undefined;
      this.options.logger.warn('schema listener disconnected; reconnecting');
      this.reconnect(1);
    });
    try {
      await client.connect();
      await client.query(`listen ${this.options.channel ?? 'sluice_schema'}`);
      this.listener = client;
      if (attempt > 0) this.scheduleReload();
    } catch (error) {
      await client.end().catch(() => {});
      if (attempt === 0) throw error;
      this.reconnect(attempt + 1);
    }
  }

  private reconnect(attempt: number): void {
    const delay = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** attempt) * (0.5 + Math.random() / 2);
    setTimeout(() => void this.listen(attempt), delay).unref();
  }
}
