import type pg from 'pg';

/**
 * Leaves the change log as a crash without durable commits would: windows from `window` on and
 * changes from `id` on are gone, and the change ids they used are issued again. `client` must be
 * a superuser connection to the test database.
 */
export async function loseChangeWindows(client: pg.Client, window: bigint, id: bigint): Promise<void> {
  await client.query(`
    begin;
    delete from sluice.change_window where seq >= ${window};
    delete from sluice.change_log where id >= ${id};
    select setval(pg_get_serial_sequence('sluice.change_log', 'id'), ${id - 1n});
    commit;`);
}
