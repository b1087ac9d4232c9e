export { inspectArtifact, type ArtifactLayout, type ArtifactModel } from './artifact-layout';
export {
  RepositoryStager,
  STAGED_MARKER,
  memberTritonName,
  tritonNameFor,
  type StagedModel,
  type Stager,
} from './stager';
