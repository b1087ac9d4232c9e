/** Quoting user text for one-line messages lives with the error catalogue. */
export { shown } from '../errors';
