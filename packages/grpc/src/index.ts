export { type Authenticate, type AuthenticatedContext, authMiddleware } from './auth-middleware';
export { callMiddleware, type SluiceCallContext, type SluiceRequest } from './call-middleware';
export { DEADLINE_METADATA_KEY, deadlineInterceptor } from './deadline-interceptor';
export { createGrpcServer, type GrpcServerOptions, type SluiceGrpcServer } from './server';
export { ERROR_DOMAIN, statusName, toServerError } from './status';
