// Receives inbound webhooks as the durable consumer "demo": `SLUICE_TOKEN=<service_role token>
// npx tsx examples/webhooks-consume.ts` (npm start prints the token and a curl that posts one).
// Each event is acknowledged after it is handled; stop it (Ctrl-C) before acknowledging and the
// next run gets the event again, so nothing is lost between a crash and the work being done.
import { createWebhooksClient } from '@sluice/client';

const client = createWebhooksClient(process.env.SLUICE_WEBHOOKS_ADDRESS ?? '127.0.0.1:50053', {
  token: process.env.SLUICE_TOKEN,
});

const abort = new AbortController();
process.once('SIGINT', () => abort.abort());
try {
  for await (const message of client.consume(
    { consumer: 'demo', ackTimeoutSeconds: 30 },
    { signal: abort.signal },
  )) {
    if (message.message?.$case !== 'event') continue; // heartbeats
    const event = message.message.value;
    console.log(
      `${event.source} ${event.externalId} ${event.eventType || '(no type)'} attempt ${event.deliveryAttempt}:`,
      event.json || `${event.body.length} bytes`,
    );
    await client.ack({ consumer: 'demo', eventIds: [event.id] });
  }
} catch (error) {
  if (!abort.signal.aborted) throw error;
}
