export {
  type GrpcServiceOptions,
  type GrpcServiceSettings,
  type GrpcServiceSpec,
  type RunningService,
  type ServiceParts,
  startGrpcService,
} from './grpc-service';
export { ServiceProcess, type ServiceProcessOptions } from './service-process';
