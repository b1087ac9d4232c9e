export { inspectArtifact, type ArtifactLayout, type ArtifactModel } from './artifact-layout';
export type { ArtifactInfo, ArtifactSource } from './artifact-source';
export {
  ArtifactFetcher,
  type FetchProgress,
  type FetcherOptions,
  type LocalArtifact,
} from './artifact-fetcher';
export { DiskCache, type CacheEntry } from './disk-cache';
export { FileSource, localPath } from './source-file';
export { S3Source, parseS3Url, type S3SourceOptions } from './source-s3';
export {
  RepositoryStager,
  STAGED_MARKER,
  memberTritonName,
  tritonNameFor,
  type StagedModel,
  type Stager,
} from './stager';
export { unpackTar, UNPACK_CHUNK, type UnpackLimits, type UnpackResult } from './unpack';
export { checkArtifactTree, entryProblem, fileType, isSpecial } from './tree-check';
