export { Gauge } from 'prom-client';
export { type LogSettings, type LokiSettings, readLogSettings } from './log-settings';
export { createLogger, flushLogs, type LoggerConfig } from './logger';
export { logLinesDropped, type WarningSink } from './loki-shipper';
export {
  type BreakerLike,
  grpcHandled,
  grpcHandling,
  grpcStarted,
  metrics,
  type PoolLike,
  registerBreaker,
  registerPool,
} from './metrics';
export { type OpsServer, type OpsServerOptions, startOpsServer } from './ops-server';
export {
  bindIterator,
  flushTracing,
  formatTraceparent,
  parseTraceparent,
  recordingTracerFor,
  type StartTracingOptions,
  shutdownTracing,
  startTracing,
  tracerFor,
  tracingEnabled,
  writerTraceContext,
} from './tracing';
export {
  loadTracingSettings,
  type OtlpTraceExport,
  readTracingSettings,
  type SamplerName,
  type TracingSettings,
} from './tracing-settings';
export { endSqlSpan, startSqlSpan, trackSqlSpan } from './tracing-sql';
