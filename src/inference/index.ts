export * from './datatypes';
export {
  BINARY_CONTENT_TYPE,
  acceptsBinary,
  bodyFormat,
  decodeInvokeBody,
  encodeInvokeResponse,
  type BodyFormat,
  type DecodedInvoke,
  type EncodedResponse,
  type ModelIO,
  type TensorSpec,
} from './kserve';
