// Publishes a message to Acme's webhook endpoints: `SLUICE_TOKEN=<service_role token> npx tsx
// examples/webhooks-publish.ts` (npm start prints the token; its demo endpoint prints what arrives).
// Publishing the same idempotency key again returns the first message instead of a second one.
import { createWebhooksClient } from '@sluice/client';

const ACME = '11111111-1111-1111-1111-111111111111';
const client = createWebhooksClient(process.env.SLUICE_WEBHOOKS_ADDRESS ?? '127.0.0.1:50053', {
  token: process.env.SLUICE_TOKEN,
});

const key = `invoice-${Math.floor(Date.now() / 60_000)}`; // one per minute
const published = await client.publish({
  eventType: 'invoice.paid',
  // Sent exactly as written: the large amount keeps every digit.
  payloadJson: '{"invoice": "in_42", "amount_cents": 12345678901234567890, "currency": "eur"}',
  idempotencyKey: key,
  tenantId: ACME,
});
console.log(
  `message ${published.message?.id} (${published.duplicate ? 'already published with this key' : 'new'}),`,
  `${published.deliveries} delivery(ies) queued`,
);

// What happened to it: deliveries and their attempts.
await new Promise((resolve) => setTimeout(resolve, 1000));
const { attempts } = await client.listAttempts({ messageId: published.message?.id ?? '' });
for (const a of attempts)
  console.log(`attempt ${a.attempt} to ${a.endpointId}: HTTP ${a.statusCode} in ${a.durationMs} ms`);
