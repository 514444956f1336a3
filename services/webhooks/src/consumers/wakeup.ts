import { ReconnectingSession } from '@sluice/db';
import type { Logger } from 'pino';

/** The channel the inbox's statement trigger notifies (migration 000008). */
export const INBOX_CHANNEL = 'sluice_webhooks_inbox';

/**
 * Wakes Consume streams: one LISTEN session per process for new inbox events (started with
 * the first stream, closed when the server drains), and local acknowledgements, which free a
 * stream's in-flight slots. Streams also poll, so a lost notification only delays them.
 */
export class ConsumerWakeup {
  readonly #listeners = new Set<(consumerId?: string) => void>();
  readonly #options: { connectionString: string; logger: Logger; draining: AbortSignal };
  #session: Promise<ReconnectingSession | undefined> | undefined;

  constructor(options: { connectionString: string; logger: Logger; draining: AbortSignal }) {
    this.#options = options;
    options.draining.addEventListener('abort', () => void this.close(), { once: true });
  }

  /** Calls `listener` on every new inbox event (no id) and on acks (the consumer's id). */
  subscribe(listener: (consumerId?: string) => void): () => void {
    this.#startListening();
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** An Ack on this process: streams of that consumer may take more. */
  acked(consumerId: string): void {
    for (const l of this.#listeners) l(consumerId);
  }

  async close(): Promise<void> {
    const session = await this.#session;
    this.#session = Promise.resolve(undefined);
    await session?.close();
  }

  #wakeAll(): void {
    for (const l of this.#listeners) l();
  }

  #startListening(): void {
    if (this.#session || this.#options.draining.aborted) return;
    const { logger, connectionString } = this.#options;
    this.#session = ReconnectingSession.start({
      name: 'consumers LISTEN',
      connectionString,
      applicationName: 'sluice-webhooks-consumers',
      logger,
      setup: async (client) => {
        await client.query(`listen ${INBOX_CHANNEL}`);
      },
      onNotification: (msg) => {
        if (msg.channel === INBOX_CHANNEL) this.#wakeAll();
      },
      // Notifications sent while disconnected are lost: look now.
      onConnected: (reconnected) => {
        if (reconnected) this.#wakeAll();
      },
    }).catch((error: unknown) => {
      // Streams still poll; the next stream tries again.
      logger.warn({ err: error }, 'consumers: LISTEN failed; polling only');
      this.#session = undefined;
      return undefined;
    });
  }
}
