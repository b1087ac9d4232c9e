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
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) throw bad('contains control characters');
  if (/\p{Surrogate}/u.test(name)) throw bad('is not well-formed Unicode (it holds a lone surrogate)');
  return name;
}
