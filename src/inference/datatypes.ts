import type { InferTensorContents } from '../triton/types';

/**
 * KServe v2 tensor datatypes: element sizes, the model-config names, the typed-contents field that
 * carries each one over gRPC, and conversions between raw little-endian bytes and JS values.
 */

export const DATATYPES = [
  'BOOL',
  'UINT8',
  'UINT16',
  'UINT32',
  'UINT64',
  'INT8',
  'INT16',
  'INT32',
  'INT64',
  'FP16',
  'FP32',
  'FP64',
  'BYTES',
  'BF16',
] as const;

export type Datatype = (typeof DATATYPES)[number];

const DATATYPE_SET = new Set<string>(DATATYPES);

export function isDatatype(s: string): s is Datatype {
  return DATATYPE_SET.has(s);
}

/** Bytes per element; BYTES is variable (0 here). */
export const ELEMENT_SIZE: Record<Datatype, number> = {
  BOOL: 1,
  UINT8: 1,
  UINT16: 2,
  UINT32: 4,
  UINT64: 8,
  INT8: 1,
  INT16: 2,
  INT32: 4,
  INT64: 8,
  FP16: 2,
  FP32: 4,
  FP64: 8,
  BYTES: 0,
  BF16: 2,
};

/** Model-config `DataType` enum name → KServe datatype (TYPE_STRING is BYTES). */
export function configTypeToDatatype(t: string): Datatype | undefined {
  if (t === 'TYPE_STRING') return 'BYTES';
  const d = t.replace(/^TYPE_/, '');
  return isDatatype(d) ? d : undefined;
}

export type ContentsField = keyof InferTensorContents;

/** The typed-contents field for a datatype; FP16 and BF16 have none (raw bytes only). */
export const CONTENTS_FIELD: Record<Datatype, ContentsField | undefined> = {
  BOOL: 'bool_contents',
  UINT8: 'uint_contents',
  UINT16: 'uint_contents',
  UINT32: 'uint_contents',
  UINT64: 'uint64_contents',
  INT8: 'int_contents',
  INT16: 'int_contents',
  INT32: 'int_contents',
  INT64: 'int64_contents',
  FP16: undefined,
  FP32: 'fp32_contents',
  FP64: 'fp64_contents',
  BYTES: 'bytes_contents',
  BF16: undefined,
};

/** The datatype name Triton reports for a typed-contents field in its mismatch error. */
export const CONTENTS_FIELD_TYPE: Record<ContentsField, string> = {
  bool_contents: 'BOOL',
  int_contents: 'INT32',
  int64_contents: 'INT64',
  uint_contents: 'UINT32',
  uint64_contents: 'UINT64',
  fp32_contents: 'FP32',
  fp64_contents: 'FP64',
  bytes_contents: 'BYTES',
};

export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

// --- half precision -------------------------------------------------------------------------------

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE 754 binary16 bits → number. */
export function halfToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** number → IEEE 754 binary16 bits, round to nearest even. */
export function numberToHalf(v: number): number {
  f32[0] = v;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let r = mant >> shift;
    const rem = mant & ((1 << shift) - 1);
    if (rem > half || (rem === half && r & 1)) r++;
    return sign | r;
  }
  let r = mant >> 13;
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && r & 1)) {
    r++;
    if (r === 0x400) {
      r = 0;
      e++;
      if (e >= 0x1f) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | r;
}

/** bfloat16 bits → number. */
export function bf16ToNumber(b: number): number {
  u32[0] = b << 16;
  return f32[0];
}

/** number → bfloat16 bits, round to nearest even. */
export function numberToBf16(v: number): number {
  f32[0] = v;
  const x = u32[0];
  if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) return (x >>> 16) | 0x40;
  const rounding = 0x7fff + ((x >>> 16) & 1);
  return ((x + rounding) >>> 16) & 0xffff;
}

// --- BYTES serialisation ----------------------------------------------------------------------------

/** Triton's raw BYTES layout: each element is a 4-byte little-endian length followed by its bytes. */
export function serializeBytesElements(elements: readonly Buffer[]): Buffer {
  let total = 0;
  for (const e of elements) total += 4 + e.length;
  const out = Buffer.allocUnsafe(total);
  let off = 0;
  for (const e of elements) {
    out.writeUInt32LE(e.length, off);
    e.copy(out, off + 4);
    off += 4 + e.length;
  }
  return out;
}

/** Parses raw BYTES; returns undefined when the buffer is not a well-formed sequence. */
export function deserializeBytesElements(buf: Buffer): Buffer[] | undefined {
  const out: Buffer[] = [];
  let off = 0;
  while (off < buf.length) {
    if (off + 4 > buf.length) return undefined;
    const len = buf.readUInt32LE(off);
    off += 4;
    if (off + len > buf.length) return undefined;
    out.push(buf.subarray(off, off + len));
    off += len;
  }
  return out;
}

// --- raw <-> values ---------------------------------------------------------------------------------

/** A decoded tensor value: numbers, booleans, bigints (64-bit beyond 2^53) or byte strings. */
export type TensorValue = number | boolean | bigint | Buffer;

/** Encodes JS values as raw little-endian bytes of `datatype`. Caller has validated types and ranges. */
export function valuesToRaw(datatype: Datatype, values: readonly TensorValue[]): Buffer {
  if (datatype === 'BYTES') return serializeBytesElements(values.map((v) => v as Buffer));
  const size = ELEMENT_SIZE[datatype];
  const out = Buffer.alloc(values.length * size);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    const o = i * size;
    switch (datatype) {
      case 'BOOL':
        out[o] = v ? 1 : 0;
        break;
      case 'UINT8':
        out.writeUInt8(Number(v), o);
        break;
      case 'INT8':
        out.writeInt8(Number(v), o);
        break;
      case 'UINT16':
        out.writeUInt16LE(Number(v), o);
        break;
      case 'INT16':
        out.writeInt16LE(Number(v), o);
        break;
      case 'UINT32':
        out.writeUInt32LE(Number(v), o);
        break;
      case 'INT32':
        out.writeInt32LE(Number(v), o);
        break;
      case 'UINT64':
        out.writeBigUInt64LE(BigInt(v as number | bigint), o);
        break;
      case 'INT64':
        out.writeBigInt64LE(BigInt(v as number | bigint), o);
        break;
      case 'FP16':
        out.writeUInt16LE(numberToHalf(Number(v)), o);
        break;
      case 'BF16':
        out.writeUInt16LE(numberToBf16(Number(v)), o);
        break;
      case 'FP32':
        out.writeFloatLE(Number(v), o);
        break;
      case 'FP64':
        out.writeDoubleLE(Number(v), o);
        break;
    }
  }
  return out;
}

/**
 * Decodes raw bytes into JS values. 64-bit integers become numbers when safe and bigints otherwise, so
 * no value is ever rounded. Throws when a BYTES buffer is malformed.
 */
export function rawToValues(datatype: Datatype, raw: Buffer): TensorValue[] {
  if (datatype === 'BYTES') {
    const els = deserializeBytesElements(raw);
    if (!els) throw new Error('malformed BYTES tensor: an element length runs past the end of the data');
    return els;
  }
  const size = ELEMENT_SIZE[datatype];
  const n = Math.floor(raw.length / size);
  const out: TensorValue[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const o = i * size;
    switch (datatype) {
      case 'BOOL':
        out[i] = raw[o] !== 0;
        break;
      case 'UINT8':
        out[i] = raw[o];
        break;
      case 'INT8':
        out[i] = raw.readInt8(o);
        break;
      case 'UINT16':
        out[i] = raw.readUInt16LE(o);
        break;
      case 'INT16':
        out[i] = raw.readInt16LE(o);
        break;
      case 'UINT32':
        out[i] = raw.readUInt32LE(o);
        break;
      case 'INT32':
        out[i] = raw.readInt32LE(o);
        break;
      case 'UINT64': {
        const b = raw.readBigUInt64LE(o);
        out[i] = b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
        break;
      }
      case 'INT64': {
        const b = raw.readBigInt64LE(o);
        out[i] = b <= BigInt(Number.MAX_SAFE_INTEGER) && b >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(b) : b;
        break;
      }
      case 'FP16':
        out[i] = halfToNumber(raw.readUInt16LE(o));
        break;
      case 'BF16':
        out[i] = bf16ToNumber(raw.readUInt16LE(o));
        break;
      case 'FP32':
        out[i] = raw.readFloatLE(o);
        break;
      case 'FP64':
        out[i] = raw.readDoubleLE(o);
        break;
    }
  }
  return out;
}

/** Turns gRPC typed contents into raw bytes of `datatype` (the caller checked the field matches). */
export function contentsToRaw(datatype: Datatype, contents: InferTensorContents): Buffer {
  const field = CONTENTS_FIELD[datatype];
  const values = field ? ((contents[field] ?? []) as TensorValue[]) : [];
  return valuesToRaw(datatype, values);
}
