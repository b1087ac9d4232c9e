import { AgentError, ErrorCode } from '../errors';

/** Longest MME model name accepted. */
export const MAX_MODEL_NAME_LENGTH = 1024;

/**
 * Checks an MME model name: an opaque string, but never empty, huge, holding control characters, or not
 * well-formed Unicode (a lone surrogate has no UTF-8 form, so two such names would hash alike).
 */
export function checkModelName(name: unknown, field = 'model_name'): string {
  const bad = (why: string) => new AgentError(ErrorCode.BadRequest, `"${field}" ${why}`);
  if (typeof name !== 'string' || name.length === 0) throw bad('must be a non-empty string');
  if (name.length > MAX_MODEL_NAME_LENGTH) throw bad(`is longer than ${MAX_MODEL_NAME_LENGTH} characters`);
  // C0 and C1 controls, and the bidirectional overrides, embeddings and isolates that make a name display
  // as another (CVE-2021-42574's "Trojan Source"): each refused by its code point.
  // eslint-disable-next-line no-control-regex
  const hidden = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/.exec(name);
  if (hidden) {
    const cp = `U+${hidden[0].codePointAt(0)?.toString(16).toUpperCase().padStart(4, '0')}`;
    const kind =
      (hidden[0].codePointAt(0) ?? 0) <= 0x9f
        ? 'a control character'
        : 'a bidirectional formatting character';
    throw bad(`contains ${kind} (${cp}) at position ${hidden.index}`);
  }
  if (/\p{Surrogate}/u.test(name)) throw bad('is not well-formed Unicode (it holds a lone surrogate)');
  return name;
}
