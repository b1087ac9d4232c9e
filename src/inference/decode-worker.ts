/**
 * The thread side of DecodePool: decodes one invoke body at a time with the same `decodeInvokeBody` the
 * event loop uses, and sends back the tensors' bytes (moved, not copied, where they own their memory).
 */
import { parentPort } from 'node:worker_threads';
import { isAgentError } from '../errors';
import { decodeInvokeBody } from './kserve-decode';
import type { DecodeJob, DecodeReply } from './decode-pool';

/** Buffers smaller than this may live in Node's shared allocation pool, which must never be moved. */
const POOL_SAFE_BYTES = 8192;

function transferable(buffers: readonly Buffer[]): ArrayBuffer[] {
  const out = new Set<ArrayBuffer>();
  for (const b of buffers) {
    const ab = b.buffer;
    if (ab instanceof ArrayBuffer && ab.byteLength >= POOL_SAFE_BYTES && b.byteLength === ab.byteLength)
      out.add(ab);
  }
  return [...out];
}

parentPort?.on('message', (job: DecodeJob) => {
  const port = parentPort;
  if (!port) return;
  let reply: DecodeReply;
  let transfer: ArrayBuffer[] = [];
  try {
    const body = Buffer.from(job.body.buffer, job.body.byteOffset, job.body.byteLength);
    const decoded = decodeInvokeBody(body, job.contentType, job.io, job.accept, { placeFloats: false });
    const raw = decoded.request.raw_input_contents ?? [];
    transfer = transferable(raw);
    reply = {
      id: job.id,
      request: decoded.request,
      binaryOutputs: decoded.binaryOutputs === 'all' ? 'all' : [...decoded.binaryOutputs],
    };
  } catch (err) {
    reply = {
      id: job.id,
      error: isAgentError(err)
        ? { code: err.code, message: err.message }
        : { message: err instanceof Error ? err.message : String(err) },
    };
  }
  port.postMessage(reply, transfer);
});
