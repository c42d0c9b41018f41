import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { signMessage } from './signing/message-signature';
import type { SigningKey } from './signing/signing-keys';

/** A message did not match its contract. Never retried: the same bytes will fail the same way. */
export class ContractViolationError extends Error {
  override readonly name = 'ContractViolationError';
  constructor(
    message: string,
    readonly issues: readonly string[],
  ) {
    super(`${message}: ${issues.join('; ')}`);
  }
}

function describeIssues(error: z.ZodError): string[] {
  return error.issues.map((issue) => `${issue.path.length ? issue.path.join('.') : '(message)'}: ${issue.message}`);
}

/** Parses and validates a message where it arrives. Unknown fields are dropped (tolerant reader). */
export function decodeMessage<S extends z.ZodType>(schema: S, raw: Buffer | string | null | undefined): z.infer<S> {
  if (raw === null || raw === undefined) {
    throw new ContractViolationError('message has no value', ['(message): empty']);
  }
  let json: unknown;
  try {
    json = JSON.parse(typeof raw === 'string' ? raw : raw.toString('utf8'));
  } catch (error) {
    throw new ContractViolationError('message is not JSON', [(error as Error).message]);
  }
  if (containsNul(json)) {
    // Valid JSON, but no string of ours may hold NUL: PostgreSQL cannot store it, so a consumer that
    // records the message would fail on it for ever. Refused here, like any other contract violation.
    throw new ContractViolationError('message does not match its contract', ['(message): strings must not contain NUL characters']);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    throw new ContractViolationError('message does not match its contract', describeIssues(parsed.error));
  }
  return parsed.data;
}

function containsNul(value: unknown): boolean {
  if (typeof value === 'string') return value.includes('\u0000');
  if (Array.isArray(value)) return value.some(containsNul);
  if (typeof value === 'object' && value !== null) return Object.entries(value).some(([key, item]) => key.includes('\u0000') || containsNul(item));
  return false;
}

/** Validates an outgoing message against its contract, so a producer can never publish a malformed one. */
export function encodeMessage<S extends z.ZodType>(schema: S, message: z.input<S>): string {
  const parsed = schema.safeParse(message);
  if (!parsed.success) {
    throw new ContractViolationError('refusing to publish a message that breaks its contract', describeIssues(parsed.error));
  }
  return JSON.stringify(parsed.data);
}

/**
 * Validates an outgoing message, signs what validation produced (`keyId`, `signature`) and encodes it.
 * Receivers verify the signature over the JSON exactly as it arrives, before their schema drops anything.
 */
export function encodeSignedMessage<S extends z.ZodType>(schema: S, message: z.input<S>, key: SigningKey): string {
  const parsed = schema.safeParse(message);
  if (!parsed.success) {
    throw new ContractViolationError('refusing to publish a message that breaks its contract', describeIssues(parsed.error));
  }
  return JSON.stringify(signMessage(parsed.data as object, key));
}

/** Fields every envelope gets from its producer at creation time. */
export function envelopeHeader(producer: string, now: Date = new Date()) {
  return { messageId: randomUUID(), occurredAt: now.toISOString(), producer };
}
