export { TritonEmulator, type TritonEmulatorOptions } from './emulator';
export { GpuMemory, emulatedPciBusId, randomGpuUuid } from './gpu-memory';
export { EMULATOR_PARAMETERS, type Counters, type EmulatorEvents } from './model-lifecycle';
export { classifierScores, patternValues, behaviourOf } from './compute';
export { texts } from './texts';
