/**
 * The floor a Node agent can reach: a bare `node:http` server that reads the body, parses the KServe
 * header (or JSON data into a typed array), calls Triton's ModelInfer with grpc-js through the same
 * protobuf definition the agent uses, and writes the KServe JSON answer. No routing, no validation, no
 * logging, no model lifecycle. Fairness: keep-alive like the agent, the same gRPC channel options, and
 * the cheapest correct encoding of the outputs (a typed array joined with commas).
 *
 *   tsx bench/overhead/bare-proxy.ts <triton grpc address> <triton model name>
 * prints `listening <port>` when ready.
 */
import * as grpc from '@grpc/grpc-js';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tritonServiceDefinition } from '../../src/triton/client';

type Raw = Record<string, unknown>;
type Call = (req: Raw, cb: (err: grpc.ServiceError | null, res?: Raw) => void) => void;

const [address, modelName] = process.argv.slice(2);
const Ctor = grpc.makeGenericClientConstructor(tritonServiceDefinition(), 'GRPCInferenceService');
const client = new Ctor(address, grpc.credentials.createInsecure(), {
  'grpc.max_send_message_length': 2 ** 31 - 1,
  'grpc.max_receive_message_length': 2 ** 31 - 1,
});
const modelInfer = (client as unknown as { ModelInfer: Call }).ModelInfer.bind(client);

interface Input {
  name: string;
  datatype: string;
  shape: number[];
  data?: number[];
  parameters?: { binary_data_size?: number };
}

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    const m = /json-header-size=(\d+)/.exec(req.headers['content-type'] ?? '');
    const headerSize = m ? Number(m[1]) : body.length;
    const doc = JSON.parse(body.toString('utf8', 0, headerSize)) as { inputs: Input[] };
    let offset = headerSize;
    const raw: Buffer[] = [];
    const inputs = doc.inputs.map((i) => {
      if (i.data) {
        const a = new Float32Array(i.data.length);
        for (let k = 0; k < a.length; k++) a[k] = i.data[k];
        raw.push(Buffer.from(a.buffer));
      } else {
        const size = i.parameters?.binary_data_size ?? 0;
        raw.push(body.subarray(offset, offset + size));
        offset += size;
      }
      return { name: i.name, datatype: i.datatype, shape: i.shape };
    });
    modelInfer({ model_name: modelName, inputs, raw_input_contents: raw }, (err, r) => {
      if (err || !r) {
        res.writeHead(502);
        res.end();
        return;
      }
      const outputs = (r.outputs as Raw[]).map((o, k) => {
        const bytes = (r.raw_output_contents as Buffer[])[k];
        const copy = new Uint8Array(bytes);
        const values = new Float32Array(copy.buffer, 0, copy.length / 4);
        return `{"name":"${String(o.name)}","datatype":"${String(o.datatype)}","shape":[${(o.shape as string[]).join(',')}],"data":[${values.join(',')}]}`;
      });
      const json = `{"model_name":"resnet","model_version":"${String(r.model_version)}","outputs":[${outputs.join(',')}]}`;
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) });
      res.end(json);
    });
  });
});
server.keepAliveTimeout = 65_000;
// Exit normally on SIGTERM, so `node --cpu-prof` writes its profile.
process.on('SIGTERM', () => process.exit(0));
server.listen(0, '127.0.0.1', () => {
  console.log(`listening ${(server.address() as AddressInfo).port}`);
});
