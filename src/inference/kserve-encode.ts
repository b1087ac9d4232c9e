import { AgentError, ErrorCode } from '../errors';
import type { ModelInferResponse } from '../triton/types';
import {
  ELEMENT_SIZE,
  elementCount,
  isDatatype,
  bf16ToNumber,
  halfToNumber,
  type Datatype,
} from './datatypes';
import { BINARY_CONTENT_TYPE } from './kserve-decode';

/**
 * KServe v2 responses over HTTP: Triton's gRPC answer as JSON, or as Triton's binary tensor extension
 * (a JSON header, then raw outputs), encoded in slices so a large answer never holds the event loop.
 */

/** Elements of one output written per piece of JSON text. */
const PIECE_ELEMENTS = 8192;
/** JSON text gathered before it becomes a Buffer. */
const FLUSH_CHARS = 1 << 18;

export interface EncodeOptions {
  /** Largest JSON text of a response; above it the answer is a 400 asking for binary outputs. */
  maxJsonBytes?: number;
  /** The setting that sets `maxJsonBytes`, named in the error. */
  limitName?: string;
}

/** A response as a list of buffers (JSON header, then binary outputs), written without concatenating. */
export interface EncodedParts {
  parts: Buffer[];
  byteLength: number;
  contentType: string;
}

export interface EncodedResponse {
  body: Buffer;
  contentType: string;
}

/**
 * A view of raw little-endian tensor bytes as a typed array (platform order: every platform Node supports
 * for this agent is little-endian). gRPC hands out slices at any offset, so unaligned ones are copied.
 */
type TypedView =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | BigUint64Array
  | BigInt64Array
  | Float32Array
  | Float64Array;

function typedView(datatype: Exclude<Datatype, 'BYTES'>, raw: Buffer): TypedView {
  const size = ELEMENT_SIZE[datatype];
  const n = Math.floor(raw.length / size);
  let buffer: ArrayBufferLike = raw.buffer;
  let offset = raw.byteOffset;
  if (offset % size !== 0) {
    const copy = new Uint8Array(n * size);
    copy.set(raw.subarray(0, n * size));
    buffer = copy.buffer;
    offset = 0;
  }
  switch (datatype) {
    case 'BOOL':
    case 'UINT8':
      return new Uint8Array(buffer, offset, n);
    case 'INT8':
      return new Int8Array(buffer, offset, n);
    case 'UINT16':
    case 'FP16':
    case 'BF16':
      return new Uint16Array(buffer, offset, n);
    case 'INT16':
      return new Int16Array(buffer, offset, n);
    case 'UINT32':
      return new Uint32Array(buffer, offset, n);
    case 'INT32':
      return new Int32Array(buffer, offset, n);
    case 'UINT64':
      return new BigUint64Array(buffer, offset, n);
    case 'INT64':
      return new BigInt64Array(buffer, offset, n);
    case 'FP32':
      return new Float32Array(buffer, offset, n);
    case 'FP64':
      return new Float64Array(buffer, offset, n);
  }
}

/**
 * Elements `[start, end)` as comma-separated JSON values. Numbers are written as `String(n)` writes them:
 * the shortest text that reads back as the same value, 64-bit integers exact, and NaN, Infinity and
 * -Infinity as those words, as Triton's own JSON writer does (rapidjson with kWriteNanAndInfFlag) where
 * JSON.stringify would silently write null.
 */
function pieceText(datatype: Datatype, view: TypedView, start: number, end: number): string {
  let s: string;
  switch (datatype) {
    case 'BOOL':
      s = view[start] !== 0 ? 'true' : 'false';
      for (let i = start + 1; i < end; i++) s += view[i] !== 0 ? ',true' : ',false';
      return s;
    case 'FP16':
      s = String(halfToNumber(view[start] as number));
      for (let i = start + 1; i < end; i++) s += `,${halfToNumber(view[i] as number)}`;
      return s;
    case 'BF16':
      s = String(bf16ToNumber(view[start] as number));
      for (let i = start + 1; i < end; i++) s += `,${bf16ToNumber(view[i] as number)}`;
      return s;
    default:
      // The typed array's own join: each element as String() writes it, without a JS loop.
      return view.subarray(start, end).join(',');
  }
}

function malformedBytes(): AgentError {
  return new AgentError(
    ErrorCode.TritonProtocol,
    'Triton returned a malformed BYTES tensor: an element length runs past the end of the data',
  );
}

/** The elements of one raw output as JSON text, in pieces of at most PIECE_ELEMENTS elements. */
function* dataPieces(datatype: Datatype, raw: Buffer): Generator<string, void, undefined> {
  if (datatype === 'BYTES') {
    let off = 0;
    let count = 0;
    let s = '';
    while (off < raw.length) {
      if (off + 4 > raw.length) throw malformedBytes();
      const len = raw.readUInt32LE(off);
      off += 4;
      if (off + len > raw.length) throw malformedBytes();
      s += (count === 0 ? '' : ',') + JSON.stringify(raw.toString('utf8', off, off + len));
      off += len;
      count++;
      if (count % PIECE_ELEMENTS === 0) {
        yield s;
        s = '';
      }
    }
    if (s !== '') yield s;
    return;
  }
  const view = typedView(datatype, raw);
  for (let start = 0; start < view.length; start += PIECE_ELEMENTS) {
    const text = pieceText(datatype, view, start, Math.min(view.length, start + PIECE_ELEMENTS));
    yield start === 0 ? text : `,${text}`;
  }
}

/** The JSON text of a response, in pieces; binary outputs are collected into `binaries` in order. */
function* jsonPieces(
  res: ModelInferResponse,
  modelName: string,
  binaryOutputs: Set<string> | 'all',
  binaries: Buffer[],
): Generator<string, void, undefined> {
  const id = res.id ? `,"id":${JSON.stringify(res.id)}` : '';
  yield `{"model_name":${JSON.stringify(modelName)},"model_version":${JSON.stringify(res.model_version)}${id},"outputs":[`;
  for (let i = 0; i < res.outputs.length; i++) {
    const o = res.outputs[i];
    const raw = res.raw_output_contents[i] ?? Buffer.alloc(0);
    const head = `${i === 0 ? '' : ','}{"name":${JSON.stringify(o.name)},"datatype":${JSON.stringify(o.datatype)},"shape":${JSON.stringify(o.shape)}`;
    if (binaryOutputs === 'all' || binaryOutputs.has(o.name)) {
      binaries.push(raw);
      yield `${head},"parameters":{"binary_data_size":${raw.length}}}`;
    } else {
      const datatype = o.datatype;
      if (!isDatatype(datatype))
        throw new AgentError(ErrorCode.TritonProtocol, `Triton returned unknown datatype '${datatype}'`);
      yield `${head},"data":[`;
      yield* dataPieces(datatype, raw);
      yield ']}';
    }
  }
  yield ']}';
}

/** `bytes` is what the JSON text would be ('exact'), or what it would be at least ('lower bound'). */
function tooLargeForJson(
  bytes: number,
  max: number,
  limitName: string | undefined,
  figure: 'exact' | 'lower bound',
): AgentError {
  return new AgentError(
    ErrorCode.BadRequest,
    `the JSON response would be ${figure === 'lower bound' ? 'at least ' : ''}${bytes} bytes, over the limit of ${max} bytes${limitName ? ` (${limitName})` : ''}; ask for binary outputs instead: the request parameter "binary_data_output": true, "parameters": {"binary_data": true} on an output, or Accept: ${BINARY_CONTENT_TYPE}`,
  );
}

/**
 * Encodes a response step by step: each step produces one piece (at most PIECE_ELEMENTS elements) of
 * JSON text, so a caller can yield to the event loop between steps. Never builds one string for the whole response, and stops as
 * soon as the JSON passes `maxJsonBytes` (before anything is sent).
 */
function* encodeSteps(
  res: ModelInferResponse,
  modelName: string,
  binaryOutputs: Set<string> | 'all',
  opts: EncodeOptions,
): Generator<void, EncodedParts, undefined> {
  const max = opts.maxJsonBytes ?? Number.POSITIVE_INFINITY;
  // A lower bound first (a digit and a comma per element), so a hopeless response is refused at once.
  let minimum = 0;
  for (const o of res.outputs) {
    if (binaryOutputs !== 'all' && !binaryOutputs.has(o.name)) minimum += 2 * elementCount(o.shape);
  }
  if (minimum > max) throw tooLargeForJson(minimum, max, opts.limitName, 'lower bound');
  const parts: Buffer[] = [];
  const binaries: Buffer[] = [];
  let text = '';
  let bytes = 0;
  for (const piece of jsonPieces(res, modelName, binaryOutputs, binaries)) {
    text += piece;
    if (text.length >= FLUSH_CHARS) {
      const b = Buffer.from(text, 'utf8');
      text = '';
      bytes += b.length;
      if (bytes > max) throw tooLargeForJson(bytes, max, opts.limitName, 'lower bound');
      parts.push(b);
    }
    yield;
  }
  if (text !== '') {
    const b = Buffer.from(text, 'utf8');
    bytes += b.length;
    parts.push(b);
  }
  if (bytes > max) throw tooLargeForJson(bytes, max, opts.limitName, 'exact');
  if (binaries.length === 0) return { parts, byteLength: bytes, contentType: 'application/json' };
  let total = bytes;
  for (const b of binaries) {
    parts.push(b);
    total += b.length;
  }
  return { parts, byteLength: total, contentType: `${BINARY_CONTENT_TYPE};json-header-size=${bytes}` };
}

/** Encodes Triton's response as KServe v2 JSON, or binary+json when any output is to be binary. */
export function encodeInvokeResponse(
  res: ModelInferResponse,
  modelName: string,
  binaryOutputs: Set<string> | 'all',
  opts: EncodeOptions = {},
): EncodedResponse {
  const steps = encodeSteps(res, modelName, binaryOutputs, opts);
  let r = steps.next();
  while (!r.done) r = steps.next();
  const { parts, byteLength, contentType } = r.value;
  return { body: parts.length === 1 ? parts[0] : Buffer.concat(parts, byteLength), contentType };
}

/** How long the encoder runs before it lets other requests in. */
const SLICE_MS = 4;

/**
 * The same encoding, yielding to the event loop every few milliseconds, so a large JSON response never
 * holds up other requests (`/ping` among them). Small responses finish in one step without yielding.
 */
export async function encodeInvokeResponseParts(
  res: ModelInferResponse,
  modelName: string,
  binaryOutputs: Set<string> | 'all',
  opts: EncodeOptions = {},
): Promise<EncodedParts> {
  const steps = encodeSteps(res, modelName, binaryOutputs, opts);
  let sliceStart = performance.now();
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    if (performance.now() - sliceStart >= SLICE_MS) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      sliceStart = performance.now();
    }
  }
}
