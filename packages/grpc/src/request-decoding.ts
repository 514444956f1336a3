import { SluiceError } from '@sluice/core';
import { BinaryReader } from '@sluice/proto';

/**
 * Strict request decoding. grpc-js answers INTERNAL "Error deserializing request" for anything
 * a decoder throws, and the generated decoders replace invalid UTF-8 with U+FFFD, which would
 * store different text than the client sent. Here every request is decoded with a reader that
 * notices invalid UTF-8, and a request that cannot be decoded becomes a marker the call
 * middleware turns into INVALID_ARGUMENT (`rejectUndecodable`).
 */

/** A ts-proto message type: enough of it to decode. */
interface MessageType {
  decode(input: BinaryReader | Uint8Array, length?: number): unknown;
}

interface MethodDefinition {
  readonly requestType: MessageType;
}

interface TsProtoServiceDefinition {
  readonly methods: Readonly<Record<string, MethodDefinition>>;
}

const UNDECODABLE = Symbol('sluice.undecodable');

interface Undecodable {
  readonly [UNDECODABLE]: SluiceError;
}

const fatalDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const lenientDecoder = new TextDecoder('utf-8', { ignoreBOM: true });

/**
 * Decodes `bytes` as `type`, throwing SluiceError INVALID_ARGUMENT for a string that is not
 * valid UTF-8 (SLUICE_INVALID_UTF8, naming the field) or a message nested deeper than the
 * decoder allows (SLUICE_FILTER_TOO_COMPLEX, as for filters nested past MAX_FILTER_DEPTH).
 */
export function decodeRequest(type: MessageType, bytes: Uint8Array): unknown {
  // Strings that were not valid UTF-8, as the lenient decoder renders them (with U+FFFD).
  const invalid = new Set<string>();
  const reader = new BinaryReader(bytes, (chunk: Uint8Array) => {
    try {
      return fatalDecoder.decode(chunk);
    } catch {
      const text = lenientDecoder.decode(chunk);
      invalid.add(text);
      return text;
    }
  });
  let message: unknown;
  try {
    message = type.decode(reader);
  } catch (error) {
    if (error instanceof Error && /recursion limit/.test(error.message)) {
      throw new SluiceError(
        'INVALID_ARGUMENT',
        'The request nests deeper than the protobuf decoder allows (100 levels); filters may nest 32 deep',
        { reason: 'SLUICE_FILTER_TOO_COMPLEX', cause: error },
      );
    }
    throw new SluiceError('INVALID_ARGUMENT', 'The request is not a valid protobuf message', {
      reason: 'SLUICE_MALFORMED_REQUEST',
      cause: error,
    });
  }
  if (invalid.size > 0) {
    const field = findInvalid(message, '', invalid) ?? '';
    const description = 'Strings must be valid UTF-8';
    throw new SluiceError('INVALID_ARGUMENT', field ? `${field}: ${description}` : description, {
      reason: 'SLUICE_INVALID_UTF8',
      violations: field ? [{ field, description }] : [],
    });
  }
  return message;
}

const snake = (name: string) => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
const join = (path: string, name: string) => (path ? `${path}.${name}` : name);

/**
 * The field path (Sluice's style: `rows[0].values[1]`, `filter.and.filters[1].condition.value`)
 * of the first string in `value` that decoding found invalid. A oneof is named by its case; a
 * sluice.type.v1.Value is named as a whole, so a bad string in it names the value.
 */
function findInvalid(value: unknown, path: string, invalid: ReadonlySet<string>): string | undefined {
  if (typeof value === 'string') return invalid.has(value) ? path : undefined;
  if (value === null || typeof value !== 'object' || value instanceof Uint8Array) return undefined;
  if (Array.isArray(value)) {
    for (const [i, item] of value.entries()) {
      const found = findInvalid(item, `${path}[${i}]`, invalid);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  const record = value as Record<string, unknown>;
  if (typeof record.$case === 'string') {
    const inner = record.value;
    // A scalar or JSON case of a Value: the Value itself is the field.
    if (inner === null || typeof inner !== 'object' || record.$case === 'jsonValue') {
      return containsInvalid(inner, invalid) ? path : undefined;
    }
    return findInvalid(inner, join(path, snake(record.$case)), invalid);
  }
  for (const [key, item] of Object.entries(record)) {
    // A oneof property (`kind`) is not part of the path: its case is.
    const isOneof = item !== null && typeof item === 'object' && '$case' in item;
    const found = findInvalid(item, isOneof ? path : join(path, snake(key)), invalid);
    if (found !== undefined) return found;
  }
  return undefined;
}

function containsInvalid(value: unknown, invalid: ReadonlySet<string>): boolean {
  if (typeof value === 'string') return invalid.has(value);
  if (value === null || typeof value !== 'object') return false;
  if (Array.isArray(value)) return value.some((v) => containsInvalid(v, invalid));
  return Object.entries(value).some(([k, v]) => invalid.has(k) || containsInvalid(v, invalid));
}

/**
 * A copy of a ts-proto service definition whose request decoders are strict (`decodeRequest`)
 * and never throw: a request that cannot be decoded reaches the call middleware as a marker.
 */
export function withStrictDecoding<D>(definition: D): D {
  const def = definition as unknown as TsProtoServiceDefinition;
  if (!def || typeof def !== 'object' || !('methods' in def)) return definition;
  const methods = Object.fromEntries(
    Object.entries(def.methods).map(([name, method]) => [
      name,
      {
        ...method,
        requestType: {
          ...method.requestType,
          decode(input: BinaryReader | Uint8Array) {
            if (input instanceof BinaryReader) return method.requestType.decode(input);
            try {
              return decodeRequest(method.requestType, input);
            } catch (error) {
              const refusal =
                error instanceof SluiceError
                  ? error
                  : new SluiceError('INTERNAL', 'Internal error', { cause: error });
              return { [UNDECODABLE]: refusal } satisfies Undecodable;
            }
          },
        },
      },
    ]),
  );
  return { ...def, methods } as unknown as D;
}

/** Throws the error a request carries when strict decoding refused it. */
export function rejectUndecodable(request: unknown): void {
  if (request !== null && typeof request === 'object' && UNDECODABLE in request) {
    throw (request as Undecodable)[UNDECODABLE];
  }
}
