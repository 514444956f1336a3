export {
  type GrpcServiceOptions,
  type GrpcServiceSpec,
  type RunningService,
  type ServiceParts,
  startGrpcService,
} from './grpc-service';
export { ServiceProcess, type ServiceProcessOptions } from './service-process';
export { type GrpcServiceSettings, readGrpcServiceSettings } from './settings';
