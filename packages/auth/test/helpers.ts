import { SluiceError } from '@sluice/core';
import { expect } from 'vitest';
import type { AuthConfig } from '../src/index';

export const SECRET = 'a-test-secret-of-at-least-thirty-two-characters';

export function authConfig(overrides: Partial<AuthConfig> = {}): AuthConfig {
  return {
    jwtSecret: SECRET,
    clockToleranceSeconds: 0,
    allowAnonymous: true,
    anonRole: 'anon',
    allowedRoles: ['anon', 'authenticated', 'service_role'],
    defaultRole: 'authenticated',
    ...overrides,
  };
}

export const nowSeconds = (): number => Math.floor(Date.now() / 1000);

/** Awaits `promise`, asserts it rejected with a SluiceError of `code` and `reason`, and returns it. */
export async function expectFailure(
  promise: Promise<unknown>,
  code: string,
  reason: string,
): Promise<SluiceError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  expect(caught, 'expected a rejection').toBeInstanceOf(SluiceError);
  const error = caught as SluiceError;
  expect({ code: error.code, reason: error.reason }).toEqual({ code, reason });
  // Client-safe: short, one line, no key material.
  expect(error.message.length).toBeLessThan(120);
  expect(error.message).not.toContain('\n');
  expect(error.message).not.toContain(SECRET);
  return error;
}

const b64url = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');

/** A JWT assembled by hand (e.g. `alg: none`), with `signature` as the third segment. */
export function handBuiltToken(
  header: Record<string, unknown>,
  payload: Record<string, unknown>,
  signature = '',
): string {
  return `${b64url(header)}.${b64url(payload)}.${signature}`;
}
