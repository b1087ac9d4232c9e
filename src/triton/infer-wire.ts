/**
 * The bytes of a ModelInferRequest, written so that a large tensor is copied as few times as possible.
 *
 * protobufjs encodes a request into a fresh buffer, copying every raw input once more after the HTTP body
 * was already read into memory: for an image that is one 600 KB allocation and copy per request on top of
 * the body and grpc-js's own framing copy. Here the request's other fields are encoded by protobufjs and
 * raw_input_contents (field 7, the last field, so the order is protobufjs's own) is written after them.
 * When the raw inputs were read into a buffer from `allocateInferTail` (each input already preceded by its
 * field key and length), the other fields are written into the room left in front of them and the whole
 * request is a view of that buffer: nothing large is copied. That happens once per buffer; a request sent
 * again is copied.
 */

/** ModelInferRequest.raw_input_contents: field 7, length-delimited (wire type 2). */
const RAW_INPUT_KEY = (7 << 3) | 2;

/** Buffers from allocateInferTail, and how many bytes at their start are free for the other fields. */
const roomInFront = new WeakMap<ArrayBufferLike, number>();

/** Bytes a protobuf varint of `n` takes (n is a non-negative safe integer). */
export function varintLength(n: number): number {
  let len = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 0x80);
    len++;
  }
  return len;
}

function writeVarint(buf: Uint8Array, pos: number, n: number): number {
  while (n >= 0x80) {
    buf[pos++] = (n % 0x80) | 0x80;
    n = Math.floor(n / 0x80);
  }
  buf[pos++] = n;
  return pos;
}

/** Bytes a raw input of `n` bytes takes in the request: its field key, its length and itself. */
export function rawInputFieldLength(n: number): number {
  return 1 + varintLength(n) + n;
}

/**
 * One buffer laid out as the end of a ModelInferRequest: each raw input of `sizes` preceded by its field
 * key and length, with `front` bytes free before them for the request's other fields. Returns the
 * inputs' views, in order, for the caller to fill (an HTTP body is read straight into them).
 */
export function allocateInferTail(front: number, sizes: readonly number[]): Buffer[] {
  let total = front;
  for (const n of sizes) total += rawInputFieldLength(n);
  // Its own ArrayBuffer, never a slice of Node's shared pool, so the room in front is the caller's alone.
  const buf = Buffer.allocUnsafeSlow(total);
  roomInFront.set(buf.buffer, front);
  const views: Buffer[] = [];
  let pos = front;
  for (const n of sizes) {
    buf[pos++] = RAW_INPUT_KEY;
    pos = writeVarint(buf, pos, n);
    views.push(buf.subarray(pos, pos + n));
    pos += n;
  }
  return views;
}

/**
 * Where `raws` sit in one tail from allocateInferTail, in order, covering it to its end, with room for
 * `headLength` bytes in front; undefined when they do not (a decoder replaced or reordered them).
 */
function placedTail(
  raws: readonly Buffer[],
  headLength: number,
): { tail: Buffer; start: number } | undefined {
  const arrayBuffer = raws[0].buffer;
  const front = roomInFront.get(arrayBuffer);
  if (front === undefined || headLength > front) return undefined;
  const tail = Buffer.from(arrayBuffer);
  let pos = front;
  for (const raw of raws) {
    if (raw.buffer !== arrayBuffer || tail[pos] !== RAW_INPUT_KEY) return undefined;
    const start = pos + 1 + varintLength(raw.length);
    if (raw.byteOffset !== start) return undefined;
    // The length written in front of the view must be the view's own.
    let n = 0;
    let scale = 1;
    for (let p = pos + 1; p < start; p++, scale *= 0x80) n += (tail[p] & 0x7f) * scale;
    if (n !== raw.length) return undefined;
    pos = start + raw.length;
  }
  return pos === tail.length ? { tail, start: front } : undefined;
}

/**
 * A ModelInferRequest's bytes from `head` (every field but raw_input_contents, as protobufjs encodes them)
 * and the raw inputs: a view of the inputs' own buffer when they were laid out by allocateInferTail, else
 * one new buffer. Byte for byte what protobufjs writes for the whole request.
 */
export function serializeInferRequest(head: Uint8Array, raws: readonly Buffer[]): Buffer {
  if (raws.length === 0) return Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  const placed = placedTail(raws, head.length);
  if (placed) {
    // Once only: the bytes handed out may still be held (grpc-js keeps a message for a retry until a
    // connection takes it), so sending the same inputs again (a retry after a reload, under another
    // name) copies them rather than rewriting the room in front.
    roomInFront.delete(raws[0].buffer);
    const at = placed.start - head.length;
    placed.tail.set(head, at);
    return placed.tail.subarray(at);
  }
  let total = head.length;
  for (const raw of raws) total += rawInputFieldLength(raw.length);
  const out = Buffer.allocUnsafe(total);
  out.set(head, 0);
  let pos = head.length;
  for (const raw of raws) {
    out[pos++] = RAW_INPUT_KEY;
    pos = writeVarint(out, pos, raw.length);
    out.set(raw, pos);
    pos += raw.length;
  }
  return out;
}
