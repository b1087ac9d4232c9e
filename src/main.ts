import { Agent } from './agent';
import { ConfigError, loadConfig, type AgentConfig } from './config';
import { messageOf } from './errors';
import { createLogger } from './observability';

/** Time past the drain and Triton's stop grace after which a stuck shutdown exits anyway. */
const SHUTDOWN_MARGIN_MS = 3_000;

/**
 * Wiring only: read the configuration, start the agent (and, in managed mode, tritonserver), drain on
 * SIGTERM or SIGINT and exit 0 (SageMaker sends SIGKILL 30 s after SIGTERM). A start that fails — a bad
 * setting, a tritonserver that exits or never gets ready — is logged with its reason and exits 1.
 */
export async function runServer(): Promise<void> {
  let config: AgentConfig;
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
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    const boundMs =
      config.drainTimeoutMs + (config.tritonManaged ? config.tritonStopGraceMs : 0) + SHUTDOWN_MARGIN_MS;
    logger.info('stopping', { signal, boundMs });
    setTimeout(() => {
      logger.error('shutdown did not finish in time; exiting', { boundMs });
      process.exit(1);
    }, boundMs).unref();
    agent.stop().then(
      () => {
        logger.info('stopped', { signal });
        process.exit(0);
      },
      (err: unknown) => {
        logger.error('shutdown failed', { error: messageOf(err) });
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  try {
    await agent.start();
  } catch (err) {
    // A signal during start: its stop() exits.
    if (stopping) return;
    stopping = true;
    logger.error('agent failed to start', { error: messageOf(err) });
    await agent.stop(0).catch(() => undefined);
    process.exit(1);
  }
}

if (require.main === module) {
  runServer().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
