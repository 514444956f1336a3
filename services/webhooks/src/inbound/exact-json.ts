/**
 * JSON parsed without losing numbers: every number stays its source text (Node 22's
 * JSON.parse source access and JSON.rawJSON), so a bigint beyond 2^53 or a numeric like 1.10
 * keeps its digits, and JSON.stringify of the result writes them back exactly as received.
 */

/** A number as JSON.rawJSON holds it: `rawJSON` is its source text. */
export interface RawNumber {
  readonly rawJSON: string;
}

// Node 22 has both; TypeScript's lib does not declare them yet.
const json = JSON as unknown as {
  parse(
    text: string,
    reviver: (key: string, value: unknown, context: { source?: string }) => unknown,
  ): unknown;
  rawJSON(text: string): RawNumber;
  isRawJSON(value: unknown): value is RawNumber;
};

/** Parses JSON text keeping each number's source text (see isRawNumber). @throws SyntaxError */
export function parseExactJson(text: string): unknown {
  return json.parse(text, (_key, value, context) =>
    typeof value === 'number' && context.source !== undefined ? json.rawJSON(context.source) : value,
  );
}

/** True for a number of parseExactJson's result. */
export function isRawNumber(value: unknown): value is RawNumber {
  return json.isRawJSON(value);
}

export const isJsonObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !isRawNumber(v);
