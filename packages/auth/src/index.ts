export { type AuthSettings, readAuthSettings } from './auth-settings';
export {
  type AuthConfig,
  type AuthenticateOptions,
  type Authenticator,
  createAuthenticator,
} from './authenticator';
export { AuthReason } from './errors';
export { type SignTokenOptions, signToken } from './sign-token';
