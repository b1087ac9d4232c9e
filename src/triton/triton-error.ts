import { status as GrpcStatus } from '@grpc/grpc-js';
import { AgentError, ErrorCode } from '../errors';

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

export function isOutOfMemoryText(message: string): boolean {
  return OUT_OF_MEMORY_TEXTS.some((t) => message.includes(t));
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

const CODE_BY_KIND: Record<TritonErrorKind, ErrorCode> = {
  NotFound: ErrorCode.ModelNotFound,
  Unavailable: ErrorCode.TritonUnavailable,
  DeadlineExceeded: ErrorCode.DeadlineExceeded,
  OutOfMemory: ErrorCode.InsufficientCapacity,
  InvalidArgument: ErrorCode.BadRequest,
  AlreadyExists: ErrorCode.ModelAlreadyLoaded,
  Unimplemented: ErrorCode.TritonInternal,
  Cancelled: ErrorCode.TritonUnavailable,
  Internal: ErrorCode.TritonInternal,
  Unknown: ErrorCode.TritonInternal,
};

export function classifyTritonFailure(grpcCode: number, message: string): TritonErrorKind {
  if (isOutOfMemoryText(message)) return 'OutOfMemory';
  return KIND_BY_STATUS[grpcCode] ?? 'Unknown';
}

/** A failed Triton call: keeps Triton's own message and the gRPC code. */
export class TritonError extends AgentError {
  readonly kind: TritonErrorKind;

  constructor(
    readonly rpc: string,
    readonly grpcCode: number,
    readonly tritonMessage: string,
    options?: { cause?: unknown },
  ) {
    const kind = classifyTritonFailure(grpcCode, tritonMessage);
    super(CODE_BY_KIND[kind], tritonMessage.trimEnd() || `Triton ${rpc} failed (gRPC ${grpcCode})`, options);
    this.name = 'TritonError';
    this.kind = kind;
  }
}
