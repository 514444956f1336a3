/** A PostgreSQL snapshot (pg_snapshot): transactions below xmin have ended, xmax and above had not started, xip were running. */
export interface Snapshot {
  readonly xmin: bigint;
  readonly xmax: bigint;
  readonly xip: readonly bigint[];
}

/**
 * Changes a client already has from a consistent snapshot: those of transactions visible in
 * `snapshot`. Only windows up to `throughWindow` can hold any (that window's boundary was taken
 * after the snapshot).
 */
export interface SnapshotCover {
  readonly snapshot: Snapshot;
  readonly throughWindow: bigint;
}

/**
 * Where a stream stands: every change of windows before `window` and, in `window`, every change
 * up to id `id` has been delivered (see sluice.change_window: windows in order, ids within one).
 */
export interface Position {
  readonly window: bigint;
  readonly id: bigint;
  readonly cover?: SnapshotCover;
}

/** Before every change. */
export const ORIGIN: Position = Object.freeze({ window: 0n, id: 0n });

/** Orders positions by (window, id); the snapshot cover does not take part. */
export function comparePositions(a: Position, b: Position): number {
  if (a.window !== b.window) return a.window < b.window ? -1 : 1;
  if (a.id !== b.id) return a.id < b.id ? -1 : 1;
  return 0;
}

/** True when the transaction `xid` had ended for `snapshot` (pg_visible_in_snapshot, for committed xids). */
export function isVisibleInSnapshot(snapshot: Snapshot, xid: bigint): boolean {
  if (xid < snapshot.xmin) return true;
  if (xid >= snapshot.xmax) return false;
  return !snapshot.xip.includes(xid);
}

/** True when a change of transaction `xid` in `window` is already covered by the position's snapshot. */
export function isCovered(position: Position, window: bigint, xid: bigint): boolean {
  const cover = position.cover;
  return cover !== undefined && window <= cover.throughWindow && isVisibleInSnapshot(cover.snapshot, xid);
}

/**
 * `to`, continuing from `from`: it keeps `from`'s snapshot cover while `to` is in a window the
 * cover reaches, and drops any cover past it. Returns `to` itself when nothing changes, so
 * positions shared by many streams stay one object.
 */
export function continuePosition(from: Position, to: Position): Position {
  const cover = from.cover;
  if (cover && to.window <= cover.throughWindow) {
    return to.cover === cover ? to : { window: to.window, id: to.id, cover };
  }
  return to.cover ? { window: to.window, id: to.id } : to;
}

/** pg_snapshot text form: `xmin:xmax:xip,xip`. */
export function formatSnapshot(snapshot: Snapshot): string {
  return `${snapshot.xmin}:${snapshot.xmax}:${snapshot.xip.join(',')}`;
}

/** Parses pg_snapshot text (`xmin:xmax:xip,xip`). */
export function parseSnapshot(text: string): Snapshot {
  const [xmin, xmax, xip] = text.split(':');
  if (xmin === undefined || xmax === undefined || xip === undefined) {
    throw new Error(`not a pg_snapshot: ${text}`);
  }
  return {
    xmin: BigInt(xmin),
    xmax: BigInt(xmax),
    xip: xip === '' ? [] : xip.split(',').map((x) => BigInt(x)),
  };
}
