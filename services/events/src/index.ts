export { type EventsConfig, loadEventsConfig } from './config';
export { createEventsService, type EventsServiceDeps } from './events-service';
export { type EventsServer, type StartEventsOptions, startEventsServer } from './server';
