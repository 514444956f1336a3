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

/** A signal linked to others until disposed (see linkedSignal). */
export interface LinkedSignal extends Disposable {
  readonly signal: AbortSignal;
}

/**
 * A signal that aborts when any of `signals` does, with its reason; `using` it unlinks it at the
 * end of the scope. Unlike AbortSignal.any, nothing of it stays registered on the sources once
 * disposed: a long-lived source (a server's shutdown signal) linked to every call would
 * otherwise keep a trace of each call that ever ran (AbortSignal.any's dependants stay listed on
 * the source until it aborts).
 */
export function linkedSignal(...signals: readonly AbortSignal[]): LinkedSignal {
  const controller = new AbortController();
  const unlink = () => {
    for (const s of signals) s.removeEventListener('abort', onAbort);
  };
  const onAbort = (event: Event) => {
    unlink();
    controller.abort((event.target as AbortSignal).reason);
  };
  const aborted = signals.find((s) => s.aborted);
  if (aborted) controller.abort(aborted.reason);
  else for (const s of signals) s.addEventListener('abort', onAbort, { once: true });
  return { signal: controller.signal, [Symbol.dispose]: unlink };
}

/**
 * A signal that aborts when `signal` does, or `ms` after now with `reason` (a SluiceError, so
 * abortError reports it as it is) — a time limit for one part of a call. `using` it stops the
 * timer and unlinks it from `signal`.
 */
export function timeLimit(signal: AbortSignal, ms: number, reason: SluiceError): LinkedSignal {
  const timer = new AbortController();
  const handle = setTimeout(() => timer.abort(reason), ms);
  const linked = linkedSignal(signal, timer.signal);
  return {
    signal: linked.signal,
    [Symbol.dispose]() {
      clearTimeout(handle);
      linked[Symbol.dispose]();
    },
  };
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
