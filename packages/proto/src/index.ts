// Generated code lives in ./gen (never hand-edited); this file only chooses what to re-export.

// The wire reader the generated decoders use, for decoding with a stricter UTF-8 check.
export { BinaryReader } from '@bufbuild/protobuf/wire';
export { NullValue, Value as JsonValue } from './gen/google/protobuf/struct';
export { Timestamp } from './gen/google/protobuf/timestamp';
export * as data from './gen/sluice/data/v1/data';
export * as events from './gen/sluice/events/v1/events';
export { Condition, Filter, FilterList, Operator } from './gen/sluice/type/v1/filter';
export { Column, ResultSet, Row, Value, ValueList } from './gen/sluice/type/v1/value';
export * as webhooks from './gen/sluice/webhooks/v1/webhooks';

import { fileURLToPath } from 'node:url';
/** Path of the descriptor set (all protos and their imports) served by server reflection. */
export const descriptorSetPath = fileURLToPath(new URL('./gen/sluice.binpb', import.meta.url));
