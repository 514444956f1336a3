/**
 * Preload for `node --import` (and `tsx --import`): starts OpenTelemetry tracing from the
 * standard OTEL_* variables before the application's modules load, so that the first RPC is
 * traced and one tracer provider serves every service of the process. Importing it does nothing
 * else: with no OTLP endpoint configured (or OTEL_SDK_DISABLED=true) it returns without loading
 * the SDK. A bad setting (e.g. OTEL_EXPORTER_OTLP_PROTOCOL=grpc) stops the process with the list
 * of problems, as the services' own configuration does.
 *
 * No loader hook is registered: Sluice makes its spans itself (gRPC middleware, Database, change
 * feed, delivery) and patches no module, so import-in-the-middle is not needed. A later
 * module-patching instrumentation would register @opentelemetry/instrumentation's hook here,
 * with `module.register`, before starting tracing.
 *
 * The services' runtime calls `startTracing` again with its service name (a no-op when this
 * preload already started it) and `shutdownTracing` at the end, which flushes what is buffered.
 */
import { ConfigError } from '@sluice/core';
import { startTracing } from './tracing';
import { loadTracingSettings } from './tracing-settings';

try {
  await startTracing({ settings: loadTracingSettings(process.env) });
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  process.stderr.write(`${error.message}\n`);
  process.exit(1);
}
