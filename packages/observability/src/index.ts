export { createLogger, type LoggerConfig } from './logger';
