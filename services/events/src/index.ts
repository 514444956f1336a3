export { type EventsConfig, loadEventsConfig } from './config';
export { createEventsService, type EventsServiceDeps } from './events-service';
// The matching and RLS machinery of change delivery, reused by the webhooks service's fan-out.
export { compileMatcher, type MatcherColumn, type RowMatcher, type RowValues } from './filter-matcher';
export { type EventsServer, type StartEventsOptions, startEventsServer } from './server';
export { matchInDatabase, type SqlFilterCheck } from './sql-filter';
export { rowInTableOrder } from './subscriber';
export { checkVisibility, type VisibilityCheck } from './visibility';
