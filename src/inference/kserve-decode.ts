import { AgentError, ErrorCode } from '../errors';
import { allocateInferTail, rawInputFieldLength } from '../triton/infer-wire';
import type { InferParameter, ModelInferRequest } from '../triton/types';
import {
  ELEMENT_SIZE,
  elementCount,
  isDatatype,
  numberToBf16,
  numberToHalf,
  serializeBytesElements,
  type Datatype,
} from './datatypes';
import { isPlacedBody, type InvokeBody } from './placed-body';

/**
 * KServe v2 inference over HTTP, as SageMaker clients send it to Triton: plain JSON, JSON sent as
 * application/octet-stream (the SageMaker MME GPU launch post's client does this), and Triton's binary
 * tensor extension under `application/vnd.sagemaker-triton.binary+json;json-header-size=N`
 * (`json-header-size=0`: the whole body is the one input of a one-input model).
 */

/** A model's tensors as Triton reports them; computed once when the model becomes resident. */
export interface ModelIO {
  maxBatchSize: number;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
}

export interface TensorSpec {
  name: string;
  datatype: Datatype;
  /** Full shape as ModelMetadata reports it (-1 for the batch dimension and variable dimensions). */
  shape: number[];
}

export const BINARY_CONTENT_TYPE = 'application/vnd.sagemaker-triton.binary+json';

export interface DecodedInvoke {
  request: Omit<ModelInferRequest, 'model_name'>;
  /** Output names to return as binary; `all` when the request (or Accept) asked for binary outputs. */
  binaryOutputs: Set<string> | 'all';
}

export type BodyFormat = { kind: 'json' } | { kind: 'binary'; headerSize: number };

const bad = (message: string) => new AgentError(ErrorCode.BadRequest, message);

/**
 * Decides how a body is to be read from its Content-Type. Throws 415 for types that cannot carry a
 * KServe request and 400 for a malformed `json-header-size`.
 */
export function bodyFormat(contentType: string | undefined, bodyLength: number): BodyFormat {
  const ct = (contentType ?? '').trim();
  if (ct === '') return { kind: 'json' };
  const [mediaRaw, ...params] = ct.split(';');
  const media = mediaRaw.trim().toLowerCase();
  if (media === BINARY_CONTENT_TYPE) {
    const param = params.map((p) => p.trim()).find((p) => p.toLowerCase().startsWith('json-header-size='));
    if (param === undefined) return { kind: 'json' };
    const value = param.slice('json-header-size='.length).trim();
    if (!/^\d+$/.test(value)) throw bad(`json-header-size must be a non-negative integer, got '${value}'`);
    const headerSize = Number(value);
    if (headerSize > bodyLength) {
      throw bad(`json-header-size ${headerSize} is larger than the request body (${bodyLength} bytes)`);
    }
    return { kind: 'binary', headerSize };
  }
  if (
    media === 'application/json' ||
    media === 'application/octet-stream' ||
    media === 'text/json' ||
    media === '*/*'
  ) {
    return { kind: 'json' };
  }
  throw new AgentError(
    ErrorCode.UnsupportedMediaType,
    `unsupported content type '${ct}': send application/json, application/octet-stream (a JSON body) or ${BINARY_CONTENT_TYPE};json-header-size=N`,
  );
}

/** True when an Accept header asks for Triton's binary output format. */
export function acceptsBinary(accept: string | undefined): boolean {
  return (accept ?? '').toLowerCase().includes(BINARY_CONTENT_TYPE);
}

const INT_RANGE: Partial<Record<Datatype, [number, number]>> = {
  UINT8: [0, 255],
  UINT16: [0, 65535],
  UINT32: [0, 4294967295],
  INT8: [-128, 127],
  INT16: [-32768, 32767],
  INT32: [-2147483648, 2147483647],
  INT64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  UINT64: [0, Number.MAX_SAFE_INTEGER],
};

/** Deepest `data` nesting accepted (a 4-D image batch is 4). */
export const MAX_DATA_DEPTH = 32;

/**
 * A short description of any client value for an error message. Never recursive: a value nested 10,000
 * deep must give a 400, not a stack overflow.
 */
export function describeValue(v: unknown): string {
  if (v === undefined) return 'undefined';
  if (Array.isArray(v)) return v.length === 0 ? '[]' : 'an array';
  if (typeof v === 'object' && v !== null) return 'an object';
  const s = JSON.stringify(v);
  return s.length > 64 ? `${s.slice(0, 61)}...` : s;
}

/**
 * The leaves of a (possibly nested) `data` array in row-major order, found iteratively with a depth limit.
 * A flat array (the common case) is returned as it is, without a copy.
 */
function leaves(data: unknown, input: string): readonly unknown[] {
  if (!Array.isArray(data)) return [data];
  let nested = false;
  for (let i = 0; i < data.length; i++) {
    if (Array.isArray(data[i])) {
      nested = true;
      break;
    }
  }
  if (!nested) return data;
  const out: unknown[] = [];
  forEachLeaf(data, input, (v) => out.push(v));
  return out;
}

/** Visits the leaves of nested `data` in order, in one iterative walk that refuses nesting past the limit. */
function forEachLeaf(data: unknown[], input: string, visit: (leaf: unknown) => void): void {
  const arrays: unknown[][] = [data];
  const positions: number[] = [0];
  while (arrays.length > 0) {
    const top = arrays.length - 1;
    const arr = arrays[top];
    const i = positions[top];
    if (i >= arr.length) {
      arrays.pop();
      positions.pop();
      continue;
    }
    positions[top] = i + 1;
    const v: unknown = arr[i];
    if (Array.isArray(v)) {
      if (arrays.length >= MAX_DATA_DEPTH)
        throw bad(`input '${input}': data is nested more than ${MAX_DATA_DEPTH} deep`);
      arrays.push(v);
      positions.push(0);
    } else {
      visit(v);
    }
  }
}

/** True for an array holding at least one array (checked on its first element, as tensors are regular). */
function isNested(data: unknown): data is unknown[] {
  return Array.isArray(data) && data.length > 0 && Array.isArray(data[0]);
}

/**
 * Nested FP32/FP64 `data` written straight into the typed array during one iterative walk (depth-limited),
 * with the same answers as the flat path: a wrong element count is reported first, then the first element
 * of the wrong type.
 */
function nestedFloats(
  datatype: 'FP32' | 'FP64',
  data: unknown[],
  count: number,
  shape: number[],
  input: string,
  into?: Buffer,
  jsonBytes = Infinity,
): Buffer {
  // n numbers take at least 2n - 1 characters: a shape the JSON text cannot fill is refused before any
  // allocation for it (a shape of 1e11 would otherwise fail the allocation itself).
  if (count > (jsonBytes + 1) / 2) {
    let leaves = 0;
    forEachLeaf(data, input, () => leaves++);
    throw bad(
      `input '${input}': shape ${JSON.stringify(shape)} needs ${count} elements, "data" has ${leaves}`,
    );
  }
  const out = floatArray(datatype, count, into);
  let n = 0;
  let firstBad = -1;
  let badValue: unknown;
  let firstOut = -1;
  let outValue = 0;
  forEachLeaf(data, input, (v) => {
    if (typeof v === 'number') {
      if (n < count) {
        out[n] = v;
        // Beyond the type's range (FP32 overflows to ±Infinity; JSON's 1e999 parses as Infinity).
        if ((out[n] === Infinity || out[n] === -Infinity) && firstOut < 0) {
          firstOut = n;
          outValue = v;
        }
      }
    } else if (firstBad < 0) {
      firstBad = n;
      badValue = v;
    }
    n++;
  });
  if (n !== count) {
    throw bad(`input '${input}': shape ${JSON.stringify(shape)} needs ${count} elements, "data" has ${n}`);
  }
  if (firstBad >= 0) {
    throw bad(
      `input '${input}': element ${firstBad} is ${describeValue(badValue)}, expected a number for ${datatype}`,
    );
  }
  if (firstOut >= 0) {
    throw bad(
      `input '${input}': element ${firstOut} (${String(outValue)}) is out of the range of ${datatype}`,
    );
  }
  return placedBytes(out, into);
}

/** A float array of `count` elements: over `into` when it has that size and alignment, else its own. */
function floatArray(datatype: 'FP32' | 'FP64', count: number, into?: Buffer): Float32Array | Float64Array {
  const size = ELEMENT_SIZE[datatype];
  const fits = into !== undefined && into.length === count * size && into.byteOffset % size === 0;
  if (datatype === 'FP32')
    return fits ? new Float32Array(into.buffer, into.byteOffset, count) : new Float32Array(count);
  return fits ? new Float64Array(into.buffer, into.byteOffset, count) : new Float64Array(count);
}

/** The bytes of `arr`, in `into` when given (copied there unless `arr` already lies over it). */
function placedBytes(arr: Float32Array | Float64Array, into?: Buffer): Buffer {
  const bytes = bytesOf(arr);
  if (!into || into.length !== bytes.length) return bytes;
  if (bytes.buffer !== into.buffer || bytes.byteOffset !== into.byteOffset) into.set(bytes);
  return into;
}

/** Room for a JSON request's other fields (names, shapes, parameters) in front of its placed tensors. */
const ROOM_FOR_OTHER_FIELDS = 4096;

/**
 * When every input is FP32 or FP64 JSON `data` with a plain shape, one buffer laid out as the end of the
 * Triton request (triton/infer-wire.ts) with a view per input for the decoder to write the floats into, so
 * they are not copied again on the way to gRPC. The first view is 8-byte aligned (a typed array lies over
 * it; the others are copied in when unaligned). Only what the JSON text can hold is allocated: a float
 * takes at least two characters.
 */
function placeFloatInputs(inputs: unknown[], jsonBytes: number): Buffer[] | undefined {
  const sizes: number[] = [];
  let elements = 0;
  for (const entry of inputs) {
    if (!isObject(entry) || entry.data === undefined) return undefined;
    if (entry.datatype !== 'FP32' && entry.datatype !== 'FP64') return undefined;
    const data = entry.data;
    const shape = shapeOf(entry.shape);
    if (!shape) return undefined;
    const count = elementCount(shape);
    elements += count;
    if (!Number.isSafeInteger(count) || elements * 2 > jsonBytes) return undefined;
    // Flat data says its own length: nothing is allocated for a shape it does not fill (nested data is
    // bounded by the JSON's length above).
    if (Array.isArray(data) && !Array.isArray(data[0]) && data.length !== count) return undefined;
    sizes.push(count * ELEMENT_SIZE[entry.datatype]);
  }
  const keyAndLength = rawInputFieldLength(sizes[0]) - sizes[0];
  const front = ROOM_FOR_OTHER_FIELDS + ((8 - ((ROOM_FOR_OTHER_FIELDS + keyAndLength) % 8)) % 8);
  return allocateInferTail(front, sizes);
}

const SMALL_INT_ARRAY = {
  UINT8: Uint8Array,
  UINT16: Uint16Array,
  UINT32: Uint32Array,
  INT8: Int8Array,
  INT16: Int16Array,
  INT32: Int32Array,
} as const;

function bytesOf(a: { buffer: ArrayBufferLike; byteOffset: number; byteLength: number }): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

/**
 * Encodes JSON `data` of one input as raw little-endian bytes, checking every element's type and range,
 * straight into a typed array of the datatype (one pass, no intermediate arrays).
 */
function encodeJsonData(
  datatype: Datatype,
  values: readonly unknown[],
  input: string,
  into?: Buffer,
): Buffer {
  const wrong = (i: number, what: string) =>
    bad(`input '${input}': element ${i} is ${describeValue(values[i])}, expected ${what} for ${datatype}`);
  const n = values.length;
  switch (datatype) {
    case 'BYTES': {
      const els: Buffer[] = new Array<Buffer>(n);
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (typeof v !== 'string') throw wrong(i, 'a string');
        els[i] = Buffer.from(v, 'utf8');
      }
      return serializeBytesElements(els);
    }
    case 'BOOL': {
      const out = Buffer.alloc(n);
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (v === true) out[i] = 1;
        else if (v !== false) throw wrong(i, 'true or false');
      }
      return out;
    }
    case 'FP32':
    case 'FP64': {
      const arr = floatArray(datatype, n, into);
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (typeof v !== 'number') throw wrong(i, 'a number');
        arr[i] = v;
        // Beyond the type's range (FP32 overflows to ±Infinity; JSON's 1e999 parses as Infinity).
        if (arr[i] === Infinity || arr[i] === -Infinity)
          throw bad(`input '${input}': element ${i} (${String(v)}) is out of the range of ${datatype}`);
      }
      return placedBytes(arr, into);
    }
    case 'FP16':
    case 'BF16': {
      const arr = new Uint16Array(n);
      const conv = datatype === 'FP16' ? numberToHalf : numberToBf16;
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (typeof v !== 'number') throw wrong(i, 'a number');
        arr[i] = conv(v);
      }
      return bytesOf(arr);
    }
    case 'INT64':
    case 'UINT64': {
      const [lo, hi] = INT_RANGE[datatype] as [number, number];
      const arr = datatype === 'INT64' ? new BigInt64Array(n) : new BigUint64Array(n);
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) {
          throw wrong(i, `an integer in [${lo}, ${hi}]`);
        }
        arr[i] = BigInt(v);
      }
      return bytesOf(arr);
    }
    default: {
      // 8-, 16- and 32-bit integers: check type and range, then store through the matching typed array.
      const [lo, hi] = INT_RANGE[datatype] as [number, number];
      const arr = new SMALL_INT_ARRAY[datatype as keyof typeof SMALL_INT_ARRAY](n);
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) {
          throw wrong(i, `an integer in [${lo}, ${hi}]`);
        }
        arr[i] = v;
      }
      return bytesOf(arr);
    }
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseParameters(p: unknown, where: string): Record<string, InferParameter> | undefined {
  if (p === undefined) return undefined;
  if (!isObject(p)) throw bad(`${where}: parameters must be an object`);
  const out: Record<string, InferParameter> = {};
  for (const [k, v] of Object.entries(p)) {
    if (typeof v === 'boolean') out[k] = { bool_param: v };
    else if (typeof v === 'string') out[k] = { string_param: v };
    else if (typeof v === 'number' && Number.isInteger(v)) out[k] = { int64_param: v };
    else if (typeof v === 'number') out[k] = { double_param: v };
    else throw bad(`${where}: parameter '${k}' must be a boolean, number or string`);
  }
  return out;
}

/** Parameters that only steer the HTTP encoding and must not be forwarded to Triton. */
const HTTP_ONLY_PARAMETERS = new Set(['binary_data_size', 'binary_data', 'binary_data_output']);

function forwardable(
  p: Record<string, InferParameter> | undefined,
): Record<string, InferParameter> | undefined {
  if (!p) return undefined;
  const out: Record<string, InferParameter> = {};
  let any = false;
  for (const [k, v] of Object.entries(p)) {
    if (HTTP_ONLY_PARAMETERS.has(k)) continue;
    out[k] = v;
    any = true;
  }
  return any ? out : undefined;
}

/** A shape as an array of non-negative integers, or undefined when it is not one. */
function shapeOf(shape: unknown): number[] | undefined {
  if (!Array.isArray(shape)) return undefined;
  const out = new Array<number>(shape.length);
  for (let i = 0; i < shape.length; i++) {
    const d: unknown = shape[i];
    if (typeof d !== 'number' || !Number.isInteger(d) || d < 0) return undefined;
    out[i] = d;
  }
  return out;
}

function parseShape(shape: unknown, input: string): number[] {
  const out = shapeOf(shape);
  if (out) return out;
  const flat = Array.isArray(shape) && shape.every((d) => typeof d === 'number');
  throw bad(
    `input '${input}': shape must be an array of non-negative integers, got ${flat ? JSON.stringify(shape) : describeValue(shape)}`,
  );
}

export interface DecodeOptions {
  /**
   * Write JSON float inputs into one buffer laid out as the Triton request (default true). Off on the
   * decoding thread: its answer is moved to the main thread one buffer per input, and the serializer's
   * record of the room in front of a placed buffer does not cross threads.
   */
  placeFloats?: boolean;
}

/**
 * Decodes an invoke body into a Triton request. Every input travels as raw bytes. Throws 400 naming the
 * input for a wrong datatype, shape, element count, element type or binary size.
 */
export function decodeInvokeBody(
  body: InvokeBody,
  contentType: string | undefined,
  io: ModelIO,
  accept?: string,
  options: DecodeOptions = {},
): DecodedInvoke {
  const format = bodyFormat(contentType, body.length);
  if (format.kind === 'binary' && (format.headerSize === 0 || body.length === 0)) {
    // Triton answers a raw request in JSON unless binary output is asked for.
    const binary = binaryPart(body, 0);
    return {
      request: decodeRawInput(binary.take(0, binary.length), io),
      binaryOutputs: acceptsBinary(accept) ? 'all' : new Set<string>(),
    };
  }
  const headerSize = format.kind === 'binary' ? format.headerSize : body.length;
  let doc: unknown;
  try {
    if (isPlacedBody(body) && body.parsedHeader !== undefined) doc = body.parsedHeader;
    else doc = JSON.parse((isPlacedBody(body) ? body.header : body.subarray(0, headerSize)).toString('utf8'));
  } catch (err) {
    throw bad(`request body is not valid JSON: ${(err as Error).message}`);
  }
  if (!isObject(doc)) throw bad('request body must be a JSON object with an "inputs" array');
  if (!Array.isArray(doc.inputs) || doc.inputs.length === 0)
    throw bad('request must have a non-empty "inputs" array');
  const binary = binaryPart(body, headerSize);
  const floatViews = options.placeFloats === false ? undefined : placeFloatInputs(doc.inputs, headerSize);
  let offset = 0;
  const requestParams = parseParameters(doc.parameters, 'request');
  const raw: Buffer[] = [];
  const seen = new Set<string>();
  const inputs = doc.inputs.map((entry: unknown, idx: number) => {
    if (!isObject(entry)) throw bad(`inputs[${idx}] must be an object`);
    const name = entry.name;
    if (typeof name !== 'string' || name === '') throw bad(`inputs[${idx}] needs a non-empty "name"`);
    if (seen.has(name)) throw bad(`input '${name}' is given twice`);
    seen.add(name);
    const datatype = entry.datatype;
    if (typeof datatype !== 'string' || !isDatatype(datatype)) {
      throw bad(`input '${name}': unknown datatype ${describeValue(datatype)}`);
    }
    const shape = parseShape(entry.shape, name);
    const params = parseParameters(entry.parameters, `input '${name}'`);
    const count = elementCount(shape);
    const binarySize = params?.binary_data_size?.int64_param;
    if (binarySize !== undefined) {
      if (entry.data !== undefined)
        throw bad(`input '${name}': give either "data" or parameters.binary_data_size, not both`);
      if (binarySize < 0 || offset + binarySize > binary.length) {
        throw bad(`input '${name}': binary_data_size ${binarySize} runs past the end of the binary data`);
      }
      const slice = binary.take(offset, binarySize);
      offset += binarySize;
      if (datatype !== 'BYTES' && slice.length !== count * ELEMENT_SIZE[datatype]) {
        throw bad(
          `input '${name}': shape ${JSON.stringify(shape)} of ${datatype} needs ${count * ELEMENT_SIZE[datatype]} bytes, got ${slice.length}`,
        );
      }
      raw.push(slice);
    } else {
      if (entry.data === undefined)
        throw bad(`input '${name}' has no "data" and no parameters.binary_data_size`);
      if ((datatype === 'FP32' || datatype === 'FP64') && isNested(entry.data)) {
        // Nested float data (an image as [[[...]]]): straight into the typed array, no flat copy.
        raw.push(nestedFloats(datatype, entry.data, count, shape, name, floatViews?.[idx], headerSize));
        const input: ModelInferRequest['inputs'][number] = { name, datatype, shape };
        const fwd = forwardable(params);
        if (fwd) input.parameters = fwd;
        return input;
      }
      const flat = leaves(entry.data, name);
      if (flat.length !== count) {
        throw bad(
          `input '${name}': shape ${JSON.stringify(shape)} needs ${count} elements, "data" has ${flat.length}`,
        );
      }
      raw.push(encodeJsonData(datatype, flat, name, floatViews?.[idx]));
    }
    const input: ModelInferRequest['inputs'][number] = { name, datatype, shape };
    const fwd = forwardable(params);
    if (fwd) input.parameters = fwd;
    return input;
  });
  if (offset !== binary.length) {
    throw bad(`the body has ${binary.length - offset} bytes of binary data that no input claims`);
  }
  const binaryOutputs: Set<string> | 'all' =
    requestParams?.binary_data_output?.bool_param === true || acceptsBinary(accept)
      ? 'all'
      : new Set<string>();
  let outputs: ModelInferRequest['outputs'];
  if (doc.outputs !== undefined) {
    if (!Array.isArray(doc.outputs)) throw bad('"outputs" must be an array');
    outputs = doc.outputs.map((o: unknown, idx: number) => {
      if (!isObject(o) || typeof o.name !== 'string' || o.name === '')
        throw bad(`outputs[${idx}] needs a non-empty "name"`);
      const p = parseParameters(o.parameters, `output '${o.name}'`);
      if (p?.classification) throw bad(`output '${o.name}': the classification extension is not supported`);
      if (p?.binary_data?.bool_param === true && binaryOutputs !== 'all') binaryOutputs.add(o.name);
      const out: { name: string; parameters?: Record<string, InferParameter> } = { name: o.name };
      const fwd = forwardable(p);
      if (fwd) out.parameters = fwd;
      return out;
    });
  }
  if (doc.id !== undefined && typeof doc.id !== 'string') throw bad('"id" must be a string');
  const request: DecodedInvoke['request'] = { inputs, raw_input_contents: raw };
  if (typeof doc.id === 'string') request.id = doc.id;
  const fwd = forwardable(requestParams);
  if (fwd) request.parameters = fwd;
  if (outputs) request.outputs = outputs;
  return { request, binaryOutputs };
}

/** The binary part of a body, after its JSON header: its length, and a view of any range of it. */
interface BinaryPart {
  length: number;
  take(offset: number, size: number): Buffer;
}

function binaryPart(body: InvokeBody, headerSize: number): BinaryPart {
  if (!isPlacedBody(body)) {
    const binary = body.subarray(headerSize);
    return { length: binary.length, take: (offset, size) => binary.subarray(offset, offset + size) };
  }
  const { sections } = body;
  let next = 0;
  let nextStart = 0;
  return {
    length: body.length - body.header.length,
    take: (offset, size) => {
      // The decoder takes the inputs in the order and sizes they were placed by: the views themselves.
      const section = sections[next];
      if (section && offset === nextStart && section.length === size) {
        next++;
        nextStart += size;
        return section;
      }
      // Any other range (never for a body placed by placeBinaryInputs) is joined from the parts.
      return Buffer.concat(sections).subarray(offset, offset + size);
    },
  };
}

/** `json-header-size=0`: the whole body is the single input, shaped from the model's metadata. */
function decodeRawInput(body: Buffer, io: ModelIO): DecodedInvoke['request'] {
  if (io.inputs.length !== 1) {
    throw bad(
      `json-header-size=0 sends the body as the model's only input, but this model has ${io.inputs.length} inputs`,
    );
  }
  const spec = io.inputs[0];
  const dims = io.maxBatchSize > 0 ? [1, ...spec.shape.slice(1)] : [...spec.shape];
  let raw = body;
  if (spec.datatype === 'BYTES') {
    raw = serializeBytesElements([body]);
    for (let i = 0; i < dims.length; i++) if (dims[i] < 0) dims[i] = 1;
    if (elementCount(dims) !== 1)
      throw bad(
        `input '${spec.name}': a raw body is one BYTES element, the model expects ${JSON.stringify(spec.shape)}`,
      );
  } else {
    const variable = dims.filter((d) => d < 0).length;
    const size = ELEMENT_SIZE[spec.datatype];
    const fixed = dims.filter((d) => d >= 0).reduce((a, b) => a * b, 1);
    if (variable > 1) {
      throw bad(
        `input '${spec.name}' has ${variable} variable dimensions; a raw body cannot say its shape, send JSON instead`,
      );
    }
    if (variable === 1) {
      const total = body.length / size;
      if (!Number.isInteger(total) || total % fixed !== 0) {
        throw bad(
          `input '${spec.name}': ${body.length} bytes is not a whole number of ${JSON.stringify(spec.shape)} ${spec.datatype} rows`,
        );
      }
      dims[dims.indexOf(-1)] = total / fixed;
    } else if (body.length !== fixed * size) {
      throw bad(
        `input '${spec.name}': the model expects ${fixed * size} bytes (${JSON.stringify(dims)} ${spec.datatype}), got ${body.length}`,
      );
    }
  }
  return { inputs: [{ name: spec.name, datatype: spec.datatype, shape: dims }], raw_input_contents: [raw] };
}

// --- responses ------------------------------------------------------------------------------------
