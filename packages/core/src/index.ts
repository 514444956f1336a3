export {
  type AbortOptions,
  abortError,
  type LinkedSignal,
  linkedSignal,
  sleep,
  throwIfAborted,
  timeLimit,
} from './abort';
export {
  ConcurrencyLimit,
  type ConcurrencyLimitOptions,
  type ConcurrencySlot,
  concurrencyLimitUsage,
  identityKey,
  type LimitUsage,
} from './concurrency-limit';
export { ConfigError, deepFreeze, type Env, EnvReader } from './config';
export type { Identity, RequestContext } from './context';
export {
  type ErrorCode,
  type FieldViolation,
  invalidArgument,
  isSluiceError,
  LimitReason,
  SluiceError,
  type SluiceErrorOptions,
} from './errors';
export { Reason } from './reasons';
export { Backoff, type BackoffOptions, type RetryOptions, retry } from './retry';
export { readServiceSettings, type ServiceSettings } from './service-settings';
