/** `npm run plan -- --log FILE --gpu 24GiB,48GiB,80GiB`: the package bin's `plan` command, run from source. */
import { runCli } from '../src/cli';

void runCli(['plan', ...process.argv.slice(2)]).then((status) => {
  process.exitCode = status;
});
