import type { Logger } from 'pino';
import { loadCatalog, type SchemaCatalog } from './catalog';
import { ReconnectingSession } from './session';

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
const RECONNECT_MAX_MS = 5_000;
const DEBOUNCE_MS = 50;

/**
 * Holds the current schema catalog and reloads it after DDL, without a restart: the core
 * migration's event trigger sends NOTIFY sluice_schema, which a dedicated LISTEN session
 * receives (LISTEN needs a session, not a pooled transaction). The session reconnects in one
 * loop with backoff, jitter and a cap (ReconnectingSession) and reloads on reconnect, since
 * notifications sent while it was away are lost.
 */
export class CatalogWatcher {
  private listener: ReconnectingSession | undefined;
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
    await this.listener?.close();
    await this.reloading;
  }

  private scheduleReload(): void {
    clearTimeout(this.reloadTimer);
    this.reloadTimer = setTimeout(() => void this.reload(), DEBOUNCE_MS);
  }

  private async listen(): Promise<void> {
    const channel = this.options.channel ?? 'sluice_schema';
    this.listener = await ReconnectingSession.start({
      name: 'catalog listener',
      connectionString: this.options.connectionString,
      applicationName: 'sluice-catalog-listener',
      logger: this.options.logger,
      minDelayMs: RECONNECT_MIN_MS,
      maxDelayMs: RECONNECT_MAX_MS,
      setup: async (client) => {
        await client.query(`listen ${channel}`);
      },
      onNotification: () => this.scheduleReload(),
      // DDL may have happened while the session was away.
      onConnected: (reconnected) => {
        if (reconnected && !this.closed) this.scheduleReload();
      },
    });
  }
}
