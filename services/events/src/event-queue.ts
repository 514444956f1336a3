import { abortError } from '@sluice/core';

/**
 * A stream's bounded buffer between the shared change feed and the gRPC writer. `push` never
 * waits: when the reader is too slow and the buffer is full (events or bytes), it reports
 * overflow and the stream is ended, so one slow consumer never holds memory or the feed back.
 */
export class EventQueue<T> {
  private readonly items: { item: T; bytes: number }[] = [];
  private bytes = 0;
  private waiter: (() => void) | undefined;
  private failure: Error | undefined;

  constructor(
    private readonly maxItems: number,
    private readonly maxBytes: number,
  ) {}

  get length(): number {
    return this.items.length;
  }

  /** Items that can still be pushed (ignoring the byte bound). */
  get room(): number {
    return Math.max(0, this.maxItems - this.items.length);
  }

  /** True when more than half of either bound is in use. */
  get overHalf(): boolean {
    return this.items.length * 2 > this.maxItems || this.bytes * 2 > this.maxBytes;
  }

  /** Adds an item; false when that would exceed the bounds (nothing is added). */
  push(item: T, bytes: number): boolean {
    if (this.failure) return false;
    if (this.items.length >= this.maxItems || this.bytes + bytes > this.maxBytes) return false;
    this.items.push({ item, bytes });
    this.bytes += bytes;
    this.wake();
    return true;
  }

  /** Ends the queue: `next` throws `error` once the items before it are taken (or at once with `drop`). */
  fail(error: Error, { drop = false } = {}): void {
    if (this.failure) return;
    this.failure = error;
    if (drop) {
      this.items.length = 0;
      this.bytes = 0;
    }
    this.wake();
  }

  /** The next item, waiting for one; rejects when `signal` aborts or the queue has failed. */
  async next(signal: AbortSignal): Promise<T> {
    for (;;) {
      const head = this.items.shift();
      if (head) {
        this.bytes -= head.bytes;
        return head.item;
      }
      if (this.failure) throw this.failure;
      if (signal.aborted) throw abortError(signal);
      await new Promise<void>((resolve) => {
        const onAbort = () => resolve();
        signal.addEventListener('abort', onAbort, { once: true });
        this.waiter = () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        };
      });
      this.waiter = undefined;
    }
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }
}
