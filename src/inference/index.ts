export * from './datatypes';
export {
  BINARY_CONTENT_TYPE,
  acceptsBinary,
  bodyFormat,
  decodeInvokeBody,
  describeValue,
  MAX_DATA_DEPTH,
  type BodyFormat,
  type DecodedInvoke,
  type ModelIO,
  type TensorSpec,
} from './kserve-decode';
export {
  encodeInvokeResponse,
  encodeInvokeResponseParts,
  type EncodeOptions,
  type EncodedParts,
  type EncodedResponse,
} from './kserve-encode';
export { DecodePool, OFF_LOOP_JSON_BYTES, type DecodeJob, type DecodeReply } from './decode-pool';
export { placeBinaryInputs, isPlacedBody, type InvokeBody, type PlacedBody } from './placed-body';
