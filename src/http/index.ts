export { createApp, checkModelName, runtimeError, type AppDeps, type AppSettings } from './app';
export { STATUS_BY_CODE, asAgentError, sendError, statusOf } from './status';
export { readBody } from './body';
