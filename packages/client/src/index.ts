export { createDataClient, type DataClient, type DataClientOptions } from './data-client';
export { fromValue, toObjects, v } from './values';
