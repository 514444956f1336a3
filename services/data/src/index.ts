export { type DataConfig, loadDataConfig } from './config';
export { createDataService, type DataServiceDeps } from './data-service';
export { type DataServer, type StartOptions, startDataServer } from './server';
