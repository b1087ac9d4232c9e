/** Low-level file reads every folder may use (like time/): nothing here knows artifacts, Triton or models. */
export { readSmallFile } from './small-file';
