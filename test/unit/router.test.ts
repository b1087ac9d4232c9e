import type { IncomingMessage, ServerResponse } from 'node:http';
import { AgentError, ErrorCode } from '../../src/errors';
import { Router, type RouteOptions } from '../../src/http/router';

/** Runs the router on a request line; reports what it did. */
function route(router: Router, method: string, url: string) {
  const req = { method, url } as IncomingMessage;
  const res = {} as ServerResponse;
  const out: { ran?: unknown; error?: string; code?: string; allow?: string } = {};
  const routed = router.handle(
    req,
    res,
    (_rq, _rs, work) => {
      try {
        void work().then(
          () => undefined,
          () => undefined,
        );
      } catch (err) {
        out.error = (err as AgentError).message;
        out.code = (err as AgentError).code;
      }
    },
    (_rq, _rs, allow) => (out.allow = allow),
  );
  return { routed, ...out };
}

describe('Router (the one router)', () => {
  const seen: unknown[] = [];
  const router = new Router();
  const options: RouteOptions = { onError: () => undefined };
  router.add('/models', { GET: async (_q, _s, m) => void seen.push(['list', m.query]) }, options);
  router.add('/models/:name', { GET: async (_q, _s, m) => void seen.push(['get', m.params.name]) }, options);
  router.add(
    '/endpoints/:endpoint/invocations',
    { POST: async (_q, _s, m) => void seen.push(['invoke', m.params.endpoint]) },
    { ...options, badParam: ErrorCode.ModelNotFound },
  );
  beforeEach(() => (seen.length = 0));

  test('literals and :params, decoded; a trailing slash and letter case as express had them; HEAD is GET', async () => {
    expect(route(router, 'GET', '/models/a%2Fb').routed).toBe(true);
    expect(route(router, 'GET', '/Models/x/').routed).toBe(true);
    expect(route(router, 'HEAD', '/models?max_results=2&max_results=3').routed).toBe(true);
    expect(route(router, 'GET', 'http://agent:8080/models/y').routed).toBe(true);
    expect(route(router, 'GET', 'http://agent:8080/models/z/../y').routed).toBe(false);
    await new Promise((r) => setImmediate(r));
    expect(seen).toEqual([
      ['get', 'a/b'],
      ['get', 'x'],
      ['list', { max_results: ['2', '3'] }],
      ['get', 'y'],
    ]);
  });

  test('an escaped unreserved character in a literal is that character (RFC 3986 6.2.2.2); %2F never splits', async () => {
    expect(route(router, 'GET', '/%6Dodels/x').routed).toBe(true);
    expect(route(router, 'GET', '/mo%64els').routed).toBe(true);
    // Decoded first, then compared without regard to case: %4E is N.
    expect(route(router, 'GET', '/MO%44ELS').routed).toBe(true);
    expect(route(router, 'POST', '/endpoints/e/invocation%73').routed).toBe(true);
    // Reserved or other characters stay escaped: these are not the literals.
    expect(route(router, 'GET', '/models%2Fx').routed).toBe(false);
    expect(route(router, 'GET', '/model%20s').routed).toBe(false);
    expect(route(router, 'GET', '/%mo%dels').routed).toBe(false);
    await new Promise((r) => setImmediate(r));
    expect(seen).toEqual([
      ['get', 'x'],
      ['list', {}],
      ['list', {}],
      ['invoke', 'e'],
    ]);
  });

  test('no route, an empty :param, another method (405 with Allow), a broken escape with the route’s code', () => {
    expect(route(router, 'GET', '/nothing').routed).toBe(false);
    expect(route(router, 'GET', '/models/a/b/c').routed).toBe(false);
    expect(route(router, 'GET', '/models//').routed).toBe(false); // an empty name is no model's path
    expect(route(router, 'DELETE', '/models/a')).toMatchObject({ routed: true, allow: 'GET, HEAD' });
    expect(route(router, 'POST', '/endpoints/%E0%A4%A/invocations')).toMatchObject({
      routed: true,
      code: ErrorCode.ModelNotFound,
      error: expect.stringMatching(/malformed percent-escape/),
    });
  });
});
