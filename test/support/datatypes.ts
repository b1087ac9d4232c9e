import { DATATYPES, type Datatype } from '../../src/inference';

/** Every KServe datatype with its model-config type name, for identity models over all of them. */
export const ALL_DATATYPES: [Datatype, string][] = DATATYPES.map((d) => [
  d,
  d === 'BYTES' ? 'TYPE_STRING' : `TYPE_${d}`,
]);
