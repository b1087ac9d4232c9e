import { AgentError, ErrorCode } from '../../src/errors';
import { ANSWER_BY_CODE, runtimeError, statusOf } from '../../src/http';

describe('one error table, a column per route family', () => {
  test('every code has an MME status and a Runtime answer, and both routes follow the table', () => {
    for (const code of Object.values(ErrorCode)) {
      const row = ANSWER_BY_CODE[code];
      expect(row).toBeDefined();
      const err = new AgentError(code, 'boom');
      expect(statusOf(err)).toBe(row.mme);
      const r = runtimeError(err);
      if (row.runtime === 'ModelError') {
        expect(r).toMatchObject({ status: 424, type: 'ModelError', body: { OriginalStatusCode: row.mme } });
      } else {
        expect(r).toEqual({ ...row.runtime, body: { Message: 'boom' } });
      }
    }
  });

  test("a failed load of an artifact is the artifact's fault (400), a failed request on Triton is Triton's (502)", () => {
    expect(ANSWER_BY_CODE[ErrorCode.InvalidModel].mme).toBe(400);
    expect(ANSWER_BY_CODE[ErrorCode.TritonInternal].mme).toBe(502);
    expect(ANSWER_BY_CODE[ErrorCode.InsufficientCapacity]).toEqual({ mme: 507, runtime: 'ModelError' });
  });
});

describe('statuses the router and the server answer come from the table too', () => {
  test('405, 404 and 431 have rows; Retry-After is a column, set exactly on the retryable rows', () => {
    expect(ANSWER_BY_CODE[ErrorCode.MethodNotAllowed].mme).toBe(405);
    expect(ANSWER_BY_CODE[ErrorCode.NoRoute].mme).toBe(404);
    expect(ANSWER_BY_CODE[ErrorCode.HeadersTooLarge].mme).toBe(431);
    const retryable = Object.values(ErrorCode).filter((c) => ANSWER_BY_CODE[c].retryAfter !== undefined);
    expect(retryable.sort()).toEqual(
      [
        ErrorCode.AgentUnavailable,
        ErrorCode.ModelNotReady,
        ErrorCode.SourceUnavailable,
        ErrorCode.TritonUnavailable,
      ].sort(),
    );
    for (const c of retryable) expect(ANSWER_BY_CODE[c].mme).toBe(503);
  });
});
