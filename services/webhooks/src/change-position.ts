import { currentPosition, type Position } from '@sluice/changes';
import type pg from 'pg';

/**
 * Change-log positions as the webhooks tables store them (endpoints.start_position,
 * fanout.position, messages.change_position): "window:id", plain text, never shown to clients.
 */
export function formatChangePosition(position: Position): string {
  return `${position.window}:${position.id}`;
}

export function parseChangePosition(text: string): Position {
  const m = /^(\d+):(\d+)$/.exec(text);
  if (!m) throw new Error(`not a change position: ${JSON.stringify(text)}`);
  return { window: BigInt(m[1] as string), id: BigInt(m[2] as string) };
}

/** The position a new endpoint starts after: changes committed from now on reach it. */
export async function changePositionNow(pool: pg.Pool): Promise<string> {
  return formatChangePosition(await currentPosition(pool));
}
