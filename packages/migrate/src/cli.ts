import { runCli } from './run-cli';

// Entry point of `npm run migrate -- <verb> [args]`. Ctrl-C stops between migrations rather than
// killing one half-way (which would leave the database dirty); a second Ctrl-C exits at once.
const controller = new AbortController();
process.once('SIGINT', () => {
  controller.abort();
  process.once('SIGINT', () => process.exit(130));
});

process.exitCode = await runCli(process.argv.slice(2), {
  env: process.env,
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
  signal: controller.signal,
});
