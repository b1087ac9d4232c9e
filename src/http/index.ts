export { createApp, checkModelName, type AppDeps, type AppSettings } from './app';
export {
  ANSWER_BY_CODE,
  STATUS_BY_CODE,
  asAgentError,
  runtimeError,
  sendError,
  statusOf,
  type RuntimeAnswer,
} from './status';
export { readBody } from './body';
export { AgentServer } from './server';
