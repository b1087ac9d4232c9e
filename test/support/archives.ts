import * as zlib from 'node:zlib';
import * as tar from 'tar-stream';

export interface TarEntry {
  name: string;
  type?: tar.Header['type'];
  content?: Buffer | string;
  linkname?: string;
  mode?: number;
}

/** Builds a tar archive in memory (gzipped unless `gzip` is false), for crafted test artifacts. */
export async function buildTar(entries: TarEntry[], gzip = true): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => chunks.push(c as Buffer));
  const done = new Promise<void>((resolve, reject) => {
    pack.on('end', resolve);
    pack.on('error', reject);
  });
  for (const e of entries) {
    const content =
      e.content === undefined ? undefined : Buffer.isBuffer(e.content) ? e.content : Buffer.from(e.content);
    const header: Partial<tar.Header> & { name: string } = { name: e.name, type: e.type ?? 'file' };
    if (e.mode !== undefined) header.mode = e.mode;
    if (e.linkname !== undefined) header.linkname = e.linkname;
    await new Promise<void>((resolve, reject) => {
      pack.entry(header, content ?? Buffer.alloc(0), (err) => (err ? reject(err) : resolve()));
    });
  }
  pack.finalize();
  await done;
  const raw = Buffer.concat(chunks);
  return gzip ? zlib.gzipSync(raw) : raw;
}

/** The launch post's packing: `tar -C dir -czf resnet_pt_v0.tar.gz resnet`. */
export function resnetArtifactEntries(
  config: string,
  weights: Buffer | string = 'weights',
  file = 'model.pt',
): TarEntry[] {
  return [
    { name: 'resnet/', type: 'directory' },
    { name: 'resnet/config.pbtxt', content: config },
    { name: 'resnet/1/', type: 'directory' },
    { name: `resnet/1/${file}`, content: weights },
  ];
}

/** A ustar header: enough of the format for one file of `size` bytes. */
export function ustarHeader(name: string, size: number): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100);
  h.write('0000644\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(`${size.toString(8).padStart(11, '0')}\0`, 124);
  h.write('00000000000\0', 136);
  h.write('        ', 148);
  h.write('0', 156);
  h.write('ustar\0', 257);
  h.write('00', 263);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return h;
}
