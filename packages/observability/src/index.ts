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
