/** A PostgreSQL snapshot (pg_snapshot): transactions below xmin have ended, xmax and above had not started, xip were running. */
export interface Snapshot {
  readonly xmin: bigint;
  readonly xmax: bigint;
  readonly xip: readonly bigint[];
}

/** (xid, id) of a change; `snapshot` set only on positions that continue a snapshot. */
export interface Position {
  readonly xid: bigint;
  readonly id: bigint;
  readonly snapshot?: Snapshot;
}

/** Before every change. */
export const ORIGIN: Position = Object.freeze({ xid: 0n, id: 0n });

/** Orders positions by (xid, id); the snapshot does not take part. */
export function comparePositions(a: Position, b: Position): number {
  if (a.xid !== b.xid) return a.xid < b.xid ? -1 : 1;
  if (a.id !== b.id) return a.id < b.id ? -1 : 1;
  return 0;
}

/** True when the transaction `xid` had committed for `snapshot` (pg_visible_in_snapshot, for committed xids). */
export function isVisibleInSnapshot(snapshot: Snapshot, xid: bigint): boolean {
  if (xid < snapshot.xmin) return true;
  if (xid >= snapshot.xmax) return false;
  return !snapshot.xip.includes(xid);
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
