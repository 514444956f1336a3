/**
 * Message ids as the outside sees them: the webhook-id header and the API's message ids are
 * `msg_` + the uuid's 32 hex digits. Stable across retries of one message.
 */
const MESSAGE_PREFIX = 'msg_';
const UUID = /^([0-9a-f]{8})([0-9a-f]{4})([0-9a-f]{4})([0-9a-f]{4})([0-9a-f]{12})$/;

export function messageId(uuid: string): string {
  return `${MESSAGE_PREFIX}${uuid.replaceAll('-', '')}`;
}

/** The uuid of a msg_… id (or of a plain uuid), or undefined when it is neither. */
export function messageUuid(id: string): string | undefined {
  const hex = id.startsWith(MESSAGE_PREFIX) ? id.slice(MESSAGE_PREFIX.length) : id.replaceAll('-', '');
  const m = UUID.exec(hex.toLowerCase());
  return m ? `${m[1]}-${m[2]}-${m[3]}-${m[4]}-${m[5]}` : undefined;
}

/** A uuid in canonical text, or undefined (ids of sources and endpoints are plain uuids). */
export function parseUuid(id: string): string | undefined {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id)
    ? id.toLowerCase()
    : undefined;
}
