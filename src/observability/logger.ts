import winston from 'winston';

/** Structured JSON logs on stdout (SageMaker ships stdout to CloudWatch). */
export type Logger = winston.Logger;

export function createLogger(level = 'info', silent = false): Logger {
  return winston.createLogger({
    level,
    silent,
    format: winston.format.combine(
      winston.format.timestamp(),
      winston.format.errors({ stack: true }),
      winston.format.json(),
    ),
    transports: [new winston.transports.Console()],
  });
}

/** A logger that writes nothing, for tests and tools. */
export function silentLogger(): Logger {
  return createLogger('error', true);
}
