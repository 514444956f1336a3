import { flushLogs, type OpsServer, shutdownTracing, startOpsServer } from '@sluice/observability';
import type { Logger } from 'pino';
import type { RunningService } from './grpc-service';

export interface ServiceProcessOptions {
  readonly logger: Logger;
  /**
   * The longest a graceful stop may take before the process exits anyway (status 1): the
   * services' drain grace plus time to close pools and flush logs and spans.
   */
  readonly stopTimeoutMs: number;
}

/**
 * One OS process running one or more services (npm start runs them all; on Fly each process
 * group runs one): the ops HTTP listener, readiness over every service, signal handling and the
 * shutdown order — not ready → services drain and stop → ops listener → what the process
 * started itself (an embedded PostgreSQL) → spans and logs flushed → exit.
 */
export class ServiceProcess {
  readonly #options: ServiceProcessOptions;
  readonly #services: RunningService[] = [];
  readonly #afterServices: Array<() => Promise<void>> = [];
  #ops: OpsServer | undefined;
  #stopping = false;

  constructor(options: ServiceProcessOptions) {
    this.#options = options;
  }

  /** True once a stop began: /readyz answers 503 so the load balancer sends no new calls. */
  get stopping(): boolean {
    return this.#stopping;
  }

  /** The ops listener's port (after startOps). */
  get opsPort(): number | undefined {
    return this.#ops?.port;
  }

  /**
   * Stops on SIGINT/SIGTERM, and logs (instead of crashing on) a promise nobody handled. The
   * listeners stay for the whole stop: a second signal is ignored (the stop timeout bounds the
   * stop), because one often comes — Ctrl-C under `npm start` reaches the process from the
   * terminal and again from npm — and with no listener left Node would die mid-drain, unflushed.
   */
  handleSignals(): void {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      process.on(signal, () => {
        if (this.#stopping) this.#options.logger.info({ signal }, 'already shutting down');
        else void this.stop(signal);
      });
    }
    // Every database failure is handled where it happens (see @sluice/db session.ts), so a
    // rejection nobody handled is a bug: logged loudly, but it does not take down every
    // service of this process with it.
    process.on('unhandledRejection', (reason: unknown) => {
      this.#options.logger.error({ err: reason }, 'unhandled promise rejection (a bug: please report it)');
    });
  }

  add(service: RunningService): void {
    this.#services.push(service);
  }

  /** Something the process started itself, stopped after the services (e.g. embedded PostgreSQL). */
  afterServices(stop: () => Promise<void>): void {
    this.#afterServices.push(stop);
  }

  /** Whether the process may take traffic: not stopping, and every service ready. */
  readiness(): { ready: boolean; reason?: string } {
    if (this.#stopping) return { ready: false, reason: 'shutting down' };
    if (this.#services.length === 0) return { ready: false, reason: 'starting' };
    const waiting = this.#services.filter((s) => !s.ready()).map((s) => s.name);
    if (waiting.length > 0)
      return {
        ready: false,
        reason: `not ready (database unreachable or migrations not current): ${waiting.join(', ')}`,
      };
    return { ready: true };
  }

  /** Starts the ops HTTP listener (/healthz, /readyz, /metrics) on host:port. */
  async startOps(address: string): Promise<void> {
    this.#ops = await startOpsServer({
      address,
      logger: this.#options.logger,
      ready: async () => this.readiness(),
    });
  }

  /** The graceful stop; `exit` ends the process (0 clean, 1 when a part failed or the stop timed out). */
  async stop(reason: string, { exit = true }: { exit?: boolean } = {}): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    const { logger } = this.#options;
    logger.info({ reason }, 'shutting down');
    const timer = setTimeout(() => {
      logger.error({ timeoutMs: this.#options.stopTimeoutMs }, 'shutdown took too long; exiting');
      void this.#flush().finally(() => process.exit(1));
    }, this.#options.stopTimeoutMs);
    timer.unref();
    let clean = true;
    const step = (what: string) => (err: unknown) => {
      clean = false;
      logger.error({ err }, `${what} did not stop cleanly`);
    };
    await Promise.all(this.#services.map((s) => s.close().catch(step(`${s.name} service`))));
    await this.#ops?.close().catch(step('ops listener'));
    for (const stop of this.#afterServices.reverse()) await stop().catch(step('a process part'));
    logger.info('stopped');
    await this.#flush();
    clearTimeout(timer);
    if (exit) process.exit(clean ? 0 : 1);
  }

  /** Sends what is still buffered: spans first (their export may log), then log lines. */
  async #flush(): Promise<void> {
    await shutdownTracing().catch((err: unknown) => {
      process.stderr.write(`flushing spans failed: ${String(err)}\n`);
    });
    await flushLogs().catch((err: unknown) => {
      process.stderr.write(`flushing log lines failed: ${String(err)}\n`);
    });
  }
}
