import { Agent } from './agent';
import { ConfigError, loadConfig } from './config';
import { createLogger } from './observability';

/** Wiring only: read the configuration, start the agent, drain on SIGTERM (SageMaker sends SIGKILL 30 s later). */
async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  const agent = new Agent(config, logger);
  await agent.start();
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info('draining', { signal });
    void agent.stop(25_000).then(() => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
