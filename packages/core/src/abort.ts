import { SluiceError } from './errors';

/** Options every I/O function takes last. */
export interface AbortOptions {
  readonly signal?: AbortSignal;
}

/**
 * Throws the error a cancelled call should end with: DEADLINE_EXCEEDED when the signal's reason
 * says the deadline passed, CANCELLED otherwise.
 */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal);
}

/** The SluiceError matching why `signal` was aborted. */
export function abortError(signal: AbortSignal): SluiceError {
  const reason: unknown = signal.reason;
  if (reason instanceof SluiceError) return reason;
  if (reason instanceof Error && reason.name === 'TimeoutError') {
    return new SluiceError('DEADLINE_EXCEEDED', 'The deadline passed before the call finished', {
      cause: reason,
    });
  }
  return new SluiceError('CANCELLED', 'The call was cancelled', { cause: reason });
}

/**
 * A signal that aborts when `signal` does or when `deadline` passes, whichever is first. The
 * deadline abort carries a DEADLINE_EXCEEDED SluiceError as its reason so callers can tell the two apart.
 */
export function withDeadline(signal: AbortSignal, deadline: Date | undefined): AbortSignal {
  if (deadline === undefined) return signal;
  const ms = deadline.getTime() - Date.now();
  const expired = new SluiceError('DEADLINE_EXCEEDED', 'The deadline passed before the call finished');
  if (ms <= 0) return AbortSignal.abort(expired);
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(expired), ms);
  timer.unref();
  const onAbort = () => {
    clearTimeout(timer);
    controller.abort(signal.reason);
  };
  if (signal.aborted) onAbort();
  else signal.addEventListener('abort', onAbort, { once: true });
  controller.signal.addEventListener('abort', () => signal.removeEventListener('abort', onAbort), {
    once: true,
  });
  return controller.signal;
}

/** Resolves after `ms`, or rejects with the abort error when `signal` aborts first. */
export function sleep(ms: number, { signal }: AbortOptions = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError(signal as AbortSignal));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
