import { allocateInferTail } from '../triton/infer-wire';

/**
 * A binary+json invoke body read in two parts: its JSON header, and its binary inputs, each read straight
 * into its place in the request Triton will receive (triton/infer-wire.ts), so the tensors are not copied
 * again on their way to gRPC.
 */
export interface PlacedBody {
  /** The JSON header (json-header-size bytes). */
  header: Buffer;
  /** The header as JSON.parse read it while placing (so the decoder does not parse it again). */
  parsedHeader?: unknown;
  /** The binary inputs, in body order. */
  sections: Buffer[];
  /** The whole body's length. */
  length: number;
}

/** What an invoke handler reads: one buffer, or a body read into place. */
export type InvokeBody = Buffer | PlacedBody;

/** Largest header whose body is read into place; a larger one is unusual and is read as one buffer. */
const MAX_PLACED_HEADER = 64 * 1024;
/** Room for the request's other fields beyond the header's own length: the Triton model name, mainly. */
const ROOM_BEYOND_HEADER = 1024;

/**
 * Views to read a binary+json body's binary part into, one per input in body order, when every input is
 * binary (parameters.binary_data_size) and the sizes add up to the part's length. Otherwise undefined:
 * the body is read as one buffer, and the decoder says what is wrong with it, if anything.
 */
export function placeBinaryInputs(
  header: Buffer,
  binaryLength: number,
): { views: Buffer[]; parsedHeader?: unknown } | undefined {
  if (header.length > MAX_PLACED_HEADER) return undefined;
  if (header.length === 0) {
    // json-header-size=0: the whole body is the model's one input.
    return binaryLength > 0 ? { views: allocateInferTail(ROOM_BEYOND_HEADER, [binaryLength]) } : undefined;
  }
  let doc: unknown;
  try {
    doc = JSON.parse(header.toString('utf8'));
  } catch {
    return undefined;
  }
  const inputs = (doc as { inputs?: unknown } | null)?.inputs;
  if (!Array.isArray(inputs) || inputs.length === 0) return undefined;
  const sizes: number[] = [];
  let total = 0;
  for (const input of inputs as unknown[]) {
    const size = (input as { parameters?: { binary_data_size?: unknown } } | null)?.parameters
      ?.binary_data_size;
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) return undefined;
    sizes.push(size);
    total += size;
  }
  if (total !== binaryLength) return undefined;
  return { views: allocateInferTail(header.length + ROOM_BEYOND_HEADER, sizes), parsedHeader: doc };
}

export function isPlacedBody(body: InvokeBody): body is PlacedBody {
  return !Buffer.isBuffer(body);
}
