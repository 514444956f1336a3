/**
 * Stable `reason` strings (google.rpc.ErrorInfo) of the errors this package throws, and what a
 * client does on each.
 */
export const ChangesReason = {
  /** INVALID_ARGUMENT: the position token is malformed, forged or for another secret. */
  invalidPosition: 'SLUICE_INVALID_POSITION',
  /** OUT_OF_RANGE: retention deleted changes after the position; start again from a snapshot. */
  positionExpired: 'SLUICE_POSITION_EXPIRED',
  /**
   * UNAVAILABLE: the change log no longer holds windows already read (the database lost
   * committed change windows: a crash without durable commits, a restore, a failover). Reading on
   * could skip changes, so the reader stops; positions from before the loss cannot be resumed:
   * start again from a snapshot.
   */
  logRegressed: 'SLUICE_CHANGE_LOG_REGRESSED',
} as const;

export type ChangesReason = (typeof ChangesReason)[keyof typeof ChangesReason];
