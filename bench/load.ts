/** How a closed-loop load run is shaped. */
export interface LoadOptions {
  /** Workers; each awaits its call before issuing the next, so at most this many are in flight. */
  readonly concurrency: number;
  /** Calls made but not counted, so connections, JIT and caches are warm. */
  readonly warmupMs: number;
  readonly measureMs: number;
}

/** The raw outcome of one closed-loop window. */
export interface LoadSample {
  /** Latency of every successful call completed in the window, in ms. */
  readonly latencies: readonly number[];
  readonly measureMs: number;
  readonly errors: number;
  readonly firstError: unknown;
}

export interface LoadResult {
  /** Successful calls per second during the measured window. */
  readonly qps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly calls: number;
  readonly errors: number;
  /** The first error seen, to print when a case fails. */
  readonly firstError: unknown;
}

/**
 * Runs `call` in a closed loop: `concurrency` workers each await their call and issue the next,
 * first for `warmupMs` (not counted), then for `measureMs`. Latency is measured per call from
 * issue to completion; a call counts in the window it completes in. A failing
 * call is counted as an error, never thrown, so one bad call does not end the run.
 */
export async function runClosedLoop(call: () => Promise<unknown>, options: LoadOptions): Promise<LoadSample> {
  const start = performance.now();
  const measureFrom = start + options.warmupMs;
  const measureTo = measureFrom + options.measureMs;
  const latencies: number[] = [];
  let errors = 0;
  let firstError: unknown;

  const worker = async () => {
    for (;;) {
      const issued = performance.now();
      if (issued >= measureTo) return;
      let ok = true;
      try {
        await call();
      } catch (error) {
        ok = false;
        firstError ??= error;
      }
      const done = performance.now();
      if (done >= measureFrom && done <= measureTo) {
        if (ok) latencies.push(done - issued);
        else errors += 1;
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));

  return { latencies, measureMs: options.measureMs, errors, firstError };
}

/** Throughput and percentiles over several windows of the same case, as if they were one. */
export function summarize(samples: readonly LoadSample[]): LoadResult {
  const latencies = samples.flatMap((s) => s.latencies);
  const measureMs = samples.reduce((sum, s) => sum + s.measureMs, 0);
  const errors = samples.reduce((sum, s) => sum + s.errors, 0);
  const firstError = samples.find((s) => s.firstError !== undefined)?.firstError;
  const sorted = Float64Array.from(latencies).sort();
  return {
    qps: latencies.length / (measureMs / 1000),
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
    calls: latencies.length,
    errors,
    firstError,
  };
}

/** Nearest-rank percentile of sorted values (NaN when there are none). */
function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank] ?? Number.NaN;
}
