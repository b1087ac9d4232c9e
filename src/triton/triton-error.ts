import { status as GrpcStatus } from '@grpc/grpc-js';
import { AgentError, ErrorCode } from '../errors';
import { isUnansweredGrpc } from '../time';

/**
 * What a Triton failure means to the agent, decided once here from the gRPC code and Triton's text
 * (as Seldon's control-plane error does) so no caller parses messages again.
 */
export type TritonErrorKind =
  | 'NotFound'
  | 'Unavailable'
  | 'DeadlineExceeded'
  | 'OutOfMemory'
  | 'InvalidArgument'
  | 'AlreadyExists'
  | 'Unimplemented'
  | 'Cancelled'
  | 'Internal'
  | 'Unknown';

/**
 * Substrings that mark an out-of-memory failure. The first list is the one Triton's own SageMaker
 * front end matches (case-sensitive) to answer 507; the last entry is Triton's `--model-load-gpu-limit`
 * rejection, which that front end misses (it answers 400), but which is a capacity failure all the same.
 */
export const OUT_OF_MEMORY_TEXTS: readonly string[] = [
  'CUDA out of memory',
  'CUDA_OUT_OF_MEMORY',
  'Out of memory',
  'Out Of Memory',
  'out of memory',
  'MemoryError',
  'OutOfMemory',
  'OOM',
  'Dst tensor is not initialized',
  'Src tensor is not initialized',
  'CNMEM_STATUS_OUT_OF_MEMORY',
  'CUDNN_STATUS_NOT_INITIALIZED',
  'CUBLAS_STATUS_ALLOC_FAILED',
  'CUBLAS_STATUS_NOT_INITIALIZED',
  'Failed to allocate memory',
  'failed to allocate memory',
  'No space left on device',
  'memory limit set for GPU',
];

/** Each text as a whole word (or phrase): 'OOM' must not match a model called 'BLOOM-560m'. */
const OUT_OF_MEMORY_PATTERN = new RegExp(
  OUT_OF_MEMORY_TEXTS.map(
    (t) => `(?<![A-Za-z0-9_])${t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?![A-Za-z0-9_])`,
  ).join('|'),
);

/**
 * True when Triton's reason text says it ran out of memory. Quoted occurrences of `names` (the model's own
 * names) are taken out first, so a model whose name is such a word is not mistaken for one.
 */
export function isOutOfMemoryText(message: string, names: readonly string[] = []): boolean {
  let text = message;
  // Triton quotes model names; only quoted occurrences are taken out, so short names cannot eat words.
  for (const n of names) if (n) text = text.split(`'${n}'`).join("''").split(`"${n}"`).join('""');
  return OUT_OF_MEMORY_PATTERN.test(text);
}

/**
 * tensorrt_backend's auto-complete (Triton's default) replaces *any* failure to deserialise a plan, out of
 * memory included, by this text naming only the plan file (model_state.cc AutoCompleteConfig): the reason
 * is only in Triton's log. Returns the plan's path when `message` is that text.
 */
export function maskedPlanPath(message: string): string | undefined {
  return /unable to load plan file to auto complete config: ([^\n;]+?)(?:;|\n|$)/.exec(message)?.[1]?.trim();
}

/**
 * python_backend's text for an instance whose stub process died while loading (stub_launcher.cc): often
 * transient (the host's OOM killer, a CUDA crash), so worth one more try and never remembered as bad.
 */
export function isUnhealthyStub(message: string): boolean {
  return /Stub process '[^']*' is not healthy\./.test(message);
}

/**
 * What an out-of-memory text says the backend tried to allocate (PyTorch's "Tried to allocate 563.45
 * MiB"), in bytes; undefined when it does not say.
 */
export function triedToAllocate(text: string): number | undefined {
  const m = /Tried to allocate ([\d.]+) (B|bytes|KiB|MiB|GiB)/.exec(text);
  if (!m) return undefined;
  const unit = { B: 1, bytes: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 }[m[2]] ?? 1;
  const bytes = Number(m[1]) * unit;
  return Number.isFinite(bytes) ? Math.ceil(bytes) : undefined;
}

const KIND_BY_STATUS: Partial<Record<number, TritonErrorKind>> = {
  [GrpcStatus.NOT_FOUND]: 'NotFound',
  [GrpcStatus.UNAVAILABLE]: 'Unavailable',
  [GrpcStatus.DEADLINE_EXCEEDED]: 'DeadlineExceeded',
  [GrpcStatus.INVALID_ARGUMENT]: 'InvalidArgument',
  [GrpcStatus.ALREADY_EXISTS]: 'AlreadyExists',
  [GrpcStatus.UNIMPLEMENTED]: 'Unimplemented',
  [GrpcStatus.CANCELLED]: 'Cancelled',
  [GrpcStatus.INTERNAL]: 'Internal',
  [GrpcStatus.UNKNOWN]: 'Unknown',
};

/**
 * The one table from a Triton failure to the agent's error code, with a column per kind of call. A failed
 * *load* is the artifact's fault unless Triton was out of memory, away or too slow (Triton answers
 * INTERNAL for a config it cannot read and INVALID_ARGUMENT for a model file it cannot load); a failed
 * *request* with INTERNAL is Triton's (502), with INVALID_ARGUMENT the caller's (400).
 */
export const ERROR_CODE_BY_KIND: Record<TritonErrorKind, { load: ErrorCode; request: ErrorCode }> = {
  NotFound: { load: ErrorCode.InvalidModel, request: ErrorCode.ModelNotFound },
  Unavailable: { load: ErrorCode.TritonUnavailable, request: ErrorCode.TritonUnavailable },
  DeadlineExceeded: { load: ErrorCode.DeadlineExceeded, request: ErrorCode.DeadlineExceeded },
  OutOfMemory: { load: ErrorCode.InsufficientCapacity, request: ErrorCode.InsufficientCapacity },
  InvalidArgument: { load: ErrorCode.InvalidModel, request: ErrorCode.BadRequest },
  AlreadyExists: { load: ErrorCode.InvalidModel, request: ErrorCode.ModelAlreadyLoaded },
  Unimplemented: { load: ErrorCode.TritonInternal, request: ErrorCode.TritonInternal },
  Cancelled: { load: ErrorCode.TritonUnavailable, request: ErrorCode.TritonUnavailable },
  Internal: { load: ErrorCode.InvalidModel, request: ErrorCode.TritonInternal },
  Unknown: { load: ErrorCode.InvalidModel, request: ErrorCode.TritonInternal },
};

export function classifyTritonFailure(
  grpcCode: number,
  message: string,
  names: readonly string[] = [],
): TritonErrorKind {
  if (isOutOfMemoryText(message, names)) return 'OutOfMemory';
  return KIND_BY_STATUS[grpcCode] ?? 'Unknown';
}

/** grpc-js's texts for a connection that failed or dropped (they carry the address it tried). */
const CONNECTION_FAILURE =
  /No connection established|Connection dropped|failed to connect|ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENOENT|getaddrinfo/i;

/**
 * A failed Triton call: keeps Triton's own message (in `tritonMessage`, for logs) and the gRPC code; a
 * failed connection is told to callers without the address.
 */
export class TritonError extends AgentError {
  readonly kind: TritonErrorKind;

  /**
   * False when the call's outcome is unknown (a deadline, a cancel, a dropped connection: Triton may still
   * be doing the work); true when Triton answered, out of memory included.
   */
  get answered(): boolean {
    return this.kind === 'OutOfMemory' || !isUnansweredGrpc(this.grpcCode);
  }

  /** A connection failure's own text (it names Triton's address, which callers are not told). */
  override get operatorDetail(): string | undefined {
    return this.connectionFailure ? this.tritonMessage.trimEnd() : undefined;
  }

  /** The call never reached Triton (no connection, or it dropped): the message says so without the address. */
  readonly connectionFailure: boolean;

  constructor(
    readonly rpc: string,
    readonly grpcCode: number,
    readonly tritonMessage: string,
    options?: { cause?: unknown; names?: readonly string[] },
  ) {
    const kind = classifyTritonFailure(grpcCode, tritonMessage, options?.names);
    const connectionFailure = kind === 'Unavailable' && CONNECTION_FAILURE.test(tritonMessage);
    super(
      ERROR_CODE_BY_KIND[kind][rpc === 'RepositoryModelLoad' ? 'load' : 'request'],
      connectionFailure
        ? // The transport's own text names Triton's address: callers need only know it is away.
          'Triton is not reachable right now; retry shortly'
        : tritonMessage.trimEnd() || `Triton ${rpc} failed (gRPC ${grpcCode})`,
      options,
    );
    this.name = 'TritonError';
    this.kind = kind;
    this.connectionFailure = connectionFailure;
  }
}
