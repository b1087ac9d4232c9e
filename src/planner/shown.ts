/** Longest piece of user text quoted in an error message. */
const MAX_SHOWN = 200;

/**
 * User text (a file name, an option's value) quoted for a one-line message: control characters escaped
 * (a newline in a name cannot start a second line), and long text cut to its start and length.
 */
export function shown(text: string): string {
  // eslint-disable-next-line no-control-regex
  const escaped = text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => {
    const code = c.charCodeAt(0);
    if (c === '\n') return '\\n';
    if (c === '\r') return '\\r';
    if (c === '\t') return '\\t';
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16)}`;
  });
  const cut =
    escaped.length > MAX_SHOWN ? `${escaped.slice(0, MAX_SHOWN)}… (${text.length} characters)` : escaped;
  return `'${cut}'`;
}
