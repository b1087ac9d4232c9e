export * from './datatypes';
export {
  BINARY_CONTENT_TYPE,
  acceptsBinary,
  bodyFormat,
  decodeInvokeBody,
  describeValue,
  encodeInvokeResponse,
  encodeInvokeResponseParts,
  MAX_DATA_DEPTH,
  type BodyFormat,
  type EncodeOptions,
  type EncodedParts,
  type DecodedInvoke,
  type EncodedResponse,
  type ModelIO,
  type TensorSpec,
} from './kserve';
export { DecodePool, OFF_LOOP_JSON_BYTES, type DecodeJob, type DecodeReply } from './decode-pool';
