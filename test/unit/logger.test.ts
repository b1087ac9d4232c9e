import { createLogger, silentLogger } from '../../src/observability';

function collector() {
  const writes: string[] = [];
  return {
    sink: { write: (s: string) => writes.push(s) },
    writes,
    lines: () =>
      writes
        .join('')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('createLogger', () => {
  test('JSON lines with level, message, timestamp and the fields; lines below the level are dropped', async () => {
    const c = collector();
    const log = createLogger('info', false, c.sink);
    log.info('model loaded', { model: 'a', ms: 12.5 });
    log.debug('not written', { x: 1 });
    log.warn('careful');
    log.error('failed', { code: 'X' });
    await nextTurn();
    const lines = c.lines();
    expect(lines.map((l) => [l.level, l.message])).toEqual([
      ['info', 'model loaded'],
      ['warn', 'careful'],
      ['error', 'failed'],
    ]);
    expect(lines[0]).toMatchObject({ model: 'a', ms: 12.5 });
    expect(Number.isNaN(Date.parse(String(lines[0].timestamp)))).toBe(false);
    expect(log.enabled('info')).toBe(true);
    expect(log.enabled('debug')).toBe(false);
  });

  test('the lines of one event-loop turn reach the sink in one write', async () => {
    const c = collector();
    const log = createLogger('debug', false, c.sink);
    for (let i = 0; i < 100; i++) log.info('request', { i });
    expect(c.writes).toHaveLength(0);
    await nextTurn();
    expect(c.writes).toHaveLength(1);
    expect(c.lines().map((l) => l.i)).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });

  test('errors keep their message; a field that cannot be serialised does not throw', async () => {
    const c = collector();
    const log = createLogger('info', false, c.sink);
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    log.error('boom', { error: new Error('disk full') });
    expect(() => log.info('odd', { circular })).not.toThrow();
    expect(() => log.info('big', { n: 10n })).not.toThrow();
    await nextTurn();
    const [boom, odd, big] = c.lines();
    expect(boom.error).toMatchObject({ name: 'Error', message: 'disk full' });
    expect(odd.message).toBe('odd');
    expect(odd.logFieldsError).toMatch(/circular/i);
    expect(big.logFieldsError).toMatch(/BigInt/);
  });

  test('silent loggers and unknown levels', async () => {
    const c = collector();
    const quiet = createLogger('info', true, c.sink);
    quiet.error('nothing');
    silentLogger().error('nothing either');
    const fallback = createLogger('verbose', false, c.sink);
    fallback.debug('dropped');
    fallback.info('kept');
    await nextTurn();
    expect(c.lines().map((l) => l.message)).toEqual(['kept']);
  });
});
