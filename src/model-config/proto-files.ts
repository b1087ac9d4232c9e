import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * Where the project's `protos/` folder is. Found by walking up from this file so the same code works from
 * `src/` under ts-jest/tsx and from `dist/src/` after a build. Runs once at module load (start-up), never on
 * a request path.
 */
function findProtoDir(): string {
  let dir = __dirname;
  for (;;) {
    const candidate = path.join(dir, 'protos');
    if (fs.existsSync(path.join(candidate, 'grpc_service.proto'))) return candidate;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`protos/grpc_service.proto not found above ${__dirname}`);
    dir = parent;
  }
}

export const PROTO_DIR = findProtoDir();
export const GRPC_SERVICE_PROTO = path.join(PROTO_DIR, 'grpc_service.proto');
export const MODEL_CONFIG_PROTO = path.join(PROTO_DIR, 'model_config.proto');
