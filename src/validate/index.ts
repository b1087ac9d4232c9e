export { fileType, scanTree, type ScanOptions, type TreeProblem, type TreeScan } from './scan-tree';
export { CLEANUP_SIGNALS, ScratchDir, type CleanupSignal, type ScratchDirOptions } from './scratch-dir';
export {
  DEFAULT_MAX_UNPACK_BYTES,
  DEFAULT_MODEL_FILES,
  agentUnpackLimits,
  checkTarget,
  validateArtifact,
  type Finding,
  type ValidateOptions,
  type ValidatedModel,
  type ValidationReport,
} from './validate-artifact';
export {
  DEFAULT_TIMEOUT_SECONDS,
  MAX_TIMEOUT_SECONDS,
  VALIDATE_EXIT,
  VALIDATE_USAGE,
  runValidateCommand,
  type CommandContext,
  type CommandOutput,
} from './validate-command';
