export { type AbortOptions, abortError, sleep, throwIfAborted, withDeadline } from './abort';
export { ConfigError, deepFreeze, type Env, EnvReader } from './config';
export type { Identity, RequestContext } from './context';
export {
  type ErrorCode,
  type FieldViolation,
  invalidArgument,
  isSluiceError,
  SluiceError,
  type SluiceErrorOptions,
} from './errors';
export { readServiceSettings, type ServiceSettings } from './service-settings';
