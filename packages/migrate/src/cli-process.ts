import { type RunCliOptions, runCli } from './run-cli';

/**
 * Runs the migrate CLI as this process's command: argv from the command line, the process's
 * environment, lines to stdout/stderr, the exit code in `process.exitCode`. Ctrl-C (SIGINT) or
 * SIGTERM stops between migrations rather than killing one half-way (which would leave the
 * database dirty); a second signal exits at once. `extra` adds options, e.g. `upAll`.
 */
export async function runCliProcess(
  extra: Pick<RunCliOptions, 'upAll' | 'resolveDatabase'> = {},
): Promise<void> {
  const controller = new AbortController();
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      controller.abort();
      process.once(signal, () => process.exit(130));
    });
  }
  process.exitCode = await runCli(process.argv.slice(2), {
    ...extra,
    env: process.env,
    out: (line) => process.stdout.write(`${line}\n`),
    err: (line) => process.stderr.write(`${line}\n`),
    signal: controller.signal,
  });
}
