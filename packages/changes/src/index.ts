export { ChangeFeed, type ChangeFeedOptions } from './change-feed';
export { estimateChangeLogRows } from './change-log-size';
export { ChangesReason } from './errors';
export { MAX_WRITER_LINKS, writerLinks, writerSpanContext } from './feed-span';
export {
  comparePositions,
  continuePosition,
  formatSnapshot,
  isCovered,
  isVisibleInSnapshot,
  ORIGIN,
  type Position,
  parseSnapshot,
  type Snapshot,
  type SnapshotCover,
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
  latestPosition,
  type ReadChangesOptions,
  readChanges,
  snapshotPosition,
} from './read-changes';
