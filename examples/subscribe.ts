// Follow changes to posts as alice, under RLS: a snapshot first, then every change, resuming
// from the last position after any disconnect (including a restart of the events service).
//   SLUICE_TOKEN=<alice's token> npx tsx examples/subscribe.ts
// Then change posts (e.g. run examples/quickstart.ts) and watch the events arrive.
import { createEventsClient, toObjects } from '@sluice/client';
import { events } from '@sluice/proto';
import { Status } from 'nice-grpc';
import { ErrorInfo, RichClientError } from 'nice-grpc-error-details';

const client = createEventsClient(process.env.SLUICE_EVENTS_ADDRESS ?? '127.0.0.1:50052', {
  token: process.env.SLUICE_TOKEN,
});

let position: string | undefined; // keep this somewhere durable in a real consumer
for (let attempt = 0; ; attempt++) {
  try {
    const stream = client.subscribe({
      tables: [{ table: 'posts', columns: ['id', 'title', 'status'] }],
      start: position ? { $case: 'fromPosition', value: position } : { $case: 'snapshot', value: true },
    });
    for await (const { message } of stream) {
      attempt = 0;
      if (message?.$case === 'snapshotRow')
        console.log(
          'snapshot',
          toObjects({ columns: message.value.columns, rows: [message.value.record ?? { values: [] }] })[0],
        );
      if (message?.$case === 'snapshotEnd') position = message.value.position;
      if (message?.$case === 'heartbeat') position = message.value.position;
      if (message?.$case === 'change') {
        const change = message.value;
        console.log(
          events.Operation[change.operation],
          toObjects({ columns: change.columns, rows: [change.record ?? { values: [] }] })[0],
        );
        position = change.position; // after handling the event: at-least-once becomes exactly-once
      }
    }
  } catch (error) {
    const code = error instanceof RichClientError ? error.code : undefined;
    const info =
      error instanceof RichClientError
        ? (error.extra.find((d) => d.$type === ErrorInfo.$type) as ErrorInfo | undefined)
        : undefined;
    // Older than retention, or lost by the database (docs/events-protocol.md): take a new snapshot.
    if (code === Status.OUT_OF_RANGE || info?.reason === 'SLUICE_CHANGE_LOG_REGRESSED') position = undefined;
    else if (code !== Status.UNAVAILABLE && code !== Status.RESOURCE_EXHAUSTED && code !== Status.CANCELLED)
      throw error;
    const delay = Math.min(10_000, 200 * 2 ** attempt);
    console.error(`stream ended (${code === undefined ? error : Status[code]}); reconnecting in ${delay} ms`);
    await new Promise((r) => setTimeout(r, delay));
  }
}
