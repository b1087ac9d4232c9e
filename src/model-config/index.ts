/**
 * Triton's model configuration as a file format: the `config.pbtxt` text format (parse, write, read the
 * fields the agent needs, place instance groups), its schema from `protos/model_config.proto`, and where
 * the protos are. Pure: no client, no I/O beyond reading the protos at start. Used by `triton/`,
 * `artifacts/`, `validate/` and `models/`.
 */
export * from './pbtxt';
export {
  modelConfigToJson,
  modelConfigFromJson,
  type JsonObject,
  type JsonValue,
} from './model-config-schema';
export { PROTO_DIR, GRPC_SERVICE_PROTO, MODEL_CONFIG_PROTO } from './proto-files';
