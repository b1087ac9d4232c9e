/**
 * The agent's one error catalogue. Every failure is created where it arises as an `AgentError` with a
 * stable `code`; `http/` maps codes to HTTP statuses in a single table. Messages are meant for the
 * caller: they say what was wrong and, where it helps, what to do.
 */

/** Stable error codes. Adding one means adding its status in `http/`'s table too. */
export const ErrorCode = {
  /** The request itself is malformed (body, headers, tensor shapes, names). */
  BadRequest: 'BAD_REQUEST',
  /** A model artifact is unusable (layout, config.pbtxt, unsafe archive entries). */
  InvalidModel: 'INVALID_MODEL',
  /** No model of that name is known to the agent. */
  ModelNotFound: 'MODEL_NOT_FOUND',
  /** The model name is already loaded (SageMaker expects 409). */
  ModelAlreadyLoaded: 'MODEL_ALREADY_LOADED',
  /** The model is known but still loading; the caller should retry. */
  ModelNotReady: 'MODEL_NOT_READY',
  /** The artifact a URL names does not exist. */
  ArtifactNotFound: 'ARTIFACT_NOT_FOUND',
  /** The request body exceeds the configured limit. */
  PayloadTooLarge: 'PAYLOAD_TOO_LARGE',
  /** The content type is not one the agent accepts on that route. */
  UnsupportedMediaType: 'UNSUPPORTED_MEDIA_TYPE',
  /** No GPU (or disk) capacity can be made for the model (SageMaker expects 507). */
  InsufficientCapacity: 'INSUFFICIENT_CAPACITY',
  /** Triton is down, restarting or refusing connections. */
  TritonUnavailable: 'TRITON_UNAVAILABLE',
  /** An artifact store (S3, ...) is unreachable or failing. */
  SourceUnavailable: 'SOURCE_UNAVAILABLE',
  /** A deadline passed before the work finished. */
  DeadlineExceeded: 'DEADLINE_EXCEEDED',
  /** Triton answered something the protocol does not allow (e.g. an int64 beyond 2^53). */
  TritonProtocol: 'TRITON_PROTOCOL',
  /** Triton reported an internal failure that is not the caller's fault. */
  TritonInternal: 'TRITON_INTERNAL',
  /** A bug in the agent. */
  Internal: 'INTERNAL',
  /** The route exists but not for this method (405, with `Allow`). */
  MethodNotAllowed: 'METHOD_NOT_ALLOWED',
  /** No route matches the path. */
  NoRoute: 'NO_ROUTE',
  /** The request's headers exceed what the HTTP parser takes (431). */
  HeadersTooLarge: 'HEADERS_TOO_LARGE',
  /** A request Node's HTTP parser refused (a bad method, header or chunk): 400, the connection closes. */
  MalformedRequest: 'MALFORMED_REQUEST',
  /** An `Expect` header the agent cannot meet (anything but 100-continue): 417. */
  ExpectationFailed: 'EXPECTATION_FAILED',
  /** The agent is starting or draining: nothing is served yet, or any more (503, retry soon). */
  AgentUnavailable: 'AGENT_UNAVAILABLE',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class AgentError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AgentError';
    this.code = code;
  }

  /** What the caller was not told but an operator should see in the logs (none by default). */
  get operatorDetail(): string | undefined {
    return undefined;
  }
}

/** True when `err` is an AgentError, optionally of one of the given codes. */
export function isAgentError(err: unknown, ...codes: ErrorCode[]): err is AgentError {
  return err instanceof AgentError && (codes.length === 0 || codes.includes(err.code));
}

/** The message of anything thrown, for logs and error bodies. */
export function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

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
