export { ChangeFeed, type ChangeFeedOptions } from './change-feed';
export {
  comparePositions,
  formatSnapshot,
  isVisibleInSnapshot,
  ORIGIN,
  type Position,
  parseSnapshot,
  type Snapshot,
} from './position';
export { PositionCodec } from './position-codec';
export { type PurgeChangesOptions, purgeChanges } from './purge-changes';
export {
  type Change,
  type ChangeBatch,
  type ChangeField,
  type ChangeOp,
  type ChangeTableRows,
  capturedTables,
  currentPosition,
  type ReadChangesOptions,
  readChanges,
} from './read-changes';
