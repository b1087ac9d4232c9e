import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { AgentError, ErrorCode, type ErrorCode as Code } from '../errors';
import { bodyFormat, decodeInvokeBody, type DecodedInvoke, type ModelIO } from './kserve-decode';
import { isPlacedBody, type InvokeBody } from './placed-body';

/**
 * Decodes large JSON invoke bodies on a worker thread, so that one big request never holds the event loop
 * (JSON.parse of a 64 MiB body takes hundreds of milliseconds, and nothing else, `/ping` included, runs
 * meanwhile). Bodies whose JSON is shorter than `offLoopBytes` are decoded in place: for them a thread
 * hop costs more than it saves. The worker runs the same `decodeInvokeBody`, so answers and errors are
 * the same either way.
 */

/** JSON text at least this long is decoded on the worker (about 10 to 20 ms of parsing on the loop). */
export const OFF_LOOP_JSON_BYTES = 4 * 1024 * 1024;

/** A message to the worker. */
export interface DecodeJob {
  id: number;
  body: Uint8Array;
  contentType: string | undefined;
  io: ModelIO;
  accept: string | undefined;
}

/** The worker's answer. */
export type DecodeReply =
  | { id: number; request: DecodedInvoke['request']; binaryOutputs: string[] | 'all' }
  | { id: number; error: { code?: Code; message: string } };

interface Pending {
  resolve: (d: DecodedInvoke) => void;
  reject: (e: Error) => void;
}

/** Large buffers own their memory and can be moved to the worker instead of copied. */
function movable(b: Uint8Array): ArrayBuffer[] {
  const ab = b.buffer;
  return ab instanceof ArrayBuffer &&
    b.byteOffset === 0 &&
    b.byteLength === ab.byteLength &&
    ab.byteLength >= 8192
    ? [ab]
    : [];
}

const asBuffer = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

export class DecodePool {
  private worker: Worker | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;

  constructor(private readonly offLoopBytes = OFF_LOOP_JSON_BYTES) {}

  /**
   * Decodes an invoke body: in place when its JSON is short, else on the worker. Throws (rejects) the same
   * AgentError `decodeInvokeBody` would.
   */
  decode(
    body: InvokeBody,
    contentType: string | undefined,
    io: ModelIO,
    accept?: string,
  ): Promise<DecodedInvoke> | DecodedInvoke {
    // A placed body's JSON header is short by construction, and its tensors must stay where they are.
    if (isPlacedBody(body)) return decodeInvokeBody(body, contentType, io, accept);
    const format = bodyFormat(contentType, body.length);
    const jsonBytes = format.kind === 'binary' ? format.headerSize : body.length;
    if (jsonBytes < this.offLoopBytes) return decodeInvokeBody(body, contentType, io, accept);
    return this.decodeOnWorker(body, contentType, io, accept);
  }

  private decodeOnWorker(
    body: Buffer,
    contentType: string | undefined,
    io: ModelIO,
    accept: string | undefined,
  ): Promise<DecodedInvoke> {
    const worker = this.start();
    const id = this.nextId++;
    return new Promise<DecodedInvoke>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const job: DecodeJob = { id, body, contentType, io, accept };
      worker.postMessage(job, movable(body));
    });
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    // Under ts-node-style runners (tests, tsx) the worker is TypeScript too and needs the same loader.
    const ts = path.extname(__filename) === '.ts';
    const worker = new Worker(path.join(__dirname, `decode-worker${ts ? '.ts' : '.js'}`), {
      execArgv: ts ? ['--require', require.resolve('tsx/cjs')] : [],
    });
    worker.unref();
    worker.on('message', (reply: DecodeReply) => this.settle(reply));
    const fail = (err: Error) => {
      if (this.worker === worker) this.worker = undefined;
      const e = new AgentError(ErrorCode.Internal, `decoding thread failed: ${err.message}`, { cause: err });
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`exited with code ${code}`)));
    this.worker = worker;
    return worker;
  }

  private settle(reply: DecodeReply): void {
    const p = this.pending.get(reply.id);
    if (!p) return;
    this.pending.delete(reply.id);
    if ('error' in reply) {
      p.reject(new AgentError(reply.error.code ?? ErrorCode.Internal, reply.error.message));
      return;
    }
    const request = reply.request;
    request.raw_input_contents = (request.raw_input_contents ?? []).map(asBuffer);
    p.resolve({
      request,
      binaryOutputs: reply.binaryOutputs === 'all' ? 'all' : new Set(reply.binaryOutputs),
    });
  }

  /** Stops the worker (pending decodes fail). */
  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    if (w) await w.terminate();
  }
}
