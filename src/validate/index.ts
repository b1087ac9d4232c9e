export {
  DEFAULT_MODEL_FILES,
  agentUnpackLimits,
  validateArtifact,
  type Finding,
  type ValidateOptions,
  type ValidatedModel,
  type ValidationReport,
} from './validate-artifact';
export { VALIDATE_EXIT, VALIDATE_USAGE, runValidateCommand, type CommandOutput } from './validate-command';
