export { Gauge } from 'prom-client';
export { createLogger, type LoggerConfig } from './logger';
export { grpcHandled, grpcHandling, grpcStarted, metrics, type PoolLike, registerPool } from './metrics';
export { type OpsServer, type OpsServerOptions, startOpsServer } from './ops-server';
