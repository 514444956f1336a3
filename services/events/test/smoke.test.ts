import { events } from '@sluice/proto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ACME, type EventsStack, startEventsStack } from './helpers';

let stack: EventsStack;
beforeAll(async () => {
  stack = await startEventsStack();
});
afterAll(async () => {
  await stack?.close();
});

it('alice receives a post inserted in Acme', async () => {
  const alice = stack.eventsClient(await stack.token('alice'));
  const controller = new AbortController();
  const stream = alice.subscribe(
    { tables: [{ table: 'posts', columns: ['id', 'title'] }], start: { $case: 'fromNow', value: true } },
    { signal: controller.signal },
  );
  const iterator = stream[Symbol.asyncIterator]();
  const dave = stack.dataClient(await stack.token('dave'));
  setTimeout(() => {
    void dave.insert({
      table: 'posts',
      columns: ['tenant_id', 'title'],
      rows: [
        {
          values: [
            { kind: { $case: 'stringValue', value: ACME } },
            { kind: { $case: 'stringValue', value: 'evented' } },
          ],
        },
      ],
    });
  }, 300);
  for (;;) {
    const { value } = await iterator.next();
    const m = value?.message;
    if (m?.$case === 'change') {
      expect(m.value.operation).toBe(events.Operation.OPERATION_INSERT);
      expect(m.value.record?.values[1]?.kind).toEqual({ $case: 'stringValue', value: 'evented' });
      break;
    }
  }
  controller.abort();
});
