/**
 * Checks on text that arrives from outside (request bodies, token claims) and ends up in PostgreSQL, in
 * signed decisions and in the audit trail.
 */

/** A UTF-16 surrogate without its pair: not Unicode text. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Whether `text` holds a lone surrogate. Such text cannot be stored as given: PostgreSQL (through pg's
 * UTF-8 encoding) keeps U+FFFD in its place, so what was signed or compared in memory and what was
 * recorded would differ. Refused at the door instead.
 */
export function hasLoneSurrogate(text: string): boolean {
  return LONE_SURROGATE.test(text);
}

/**
 * Characters an identity (a token's subject) must not contain: C0 and C1 control characters, DEL, line and
 * paragraph separators, the bidirectional marks, embeddings, overrides and isolates, and the invisible
 * zero-width characters — all of which make one subject display as another (or as nothing) in the history.
 */
// eslint-disable-next-line no-control-regex, no-misleading-character-class
export const UNSAFE_IN_IDENTITY = /[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/;
