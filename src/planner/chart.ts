import { formatByteSize } from './byte-size';
import type { PlanRow } from './capacity-plan';

const BARS = '▁▂▃▄▅▆▇█';

/** One character per value, scaled between `min` and `max` (default: the values' own range). */
export function sparkline(values: number[], min = Math.min(...values), max = Math.max(...values)): string {
  return values
    .map((v) => {
      if (!Number.isFinite(v)) return ' ';
      const t = max > min ? (v - min) / (max - min) : 0;
      return BARS[Math.min(BARS.length - 1, Math.max(0, Math.round(t * (BARS.length - 1))))];
    })
    .join('');
}

const COLOURS = ['#4c78a8', '#f58518', '#54a24b', '#e45756', '#72b7b2', '#b279a2', '#9d755d'];

const escapeXml = (s: string) =>
  s.replace(
    /[<>&"']/g,
    (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c] as string,
  );

/** Round axis maximum: 1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 × a power of ten at or above `v`. */
function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/**
 * An SVG line chart of cold-load seconds per hour against GPU memory, one line per policy, with axes,
 * ticks and a legend. Plain SVG 1.1 text, no script and no external resources, so it renders the same in
 * a browser, on GitHub and in an image viewer.
 */
export function renderChart(
  rows: PlanRow[],
  options: { title?: string; defaultPolicy?: string } = {},
): string {
  const title = options.title ?? 'Cold-load seconds per hour by GPU memory';
  const W = 720;
  const H = 420;
  const m = { left: 70, right: 170, top: 40, bottom: 50 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const sizes = [...new Set(rows.map((r) => r.gpuBytes))].sort((a, b) => a - b);
  const policies = [...new Set(rows.map((r) => r.policy))];
  const yMax = niceMax(Math.max(...rows.map((r) => r.coldLoadSecondsPerHour)));
  const xMin = sizes[0];
  const xMax = sizes[sizes.length - 1];
  const x = (b: number) => m.left + (xMax > xMin ? ((b - xMin) / (xMax - xMin)) * pw : pw / 2);
  const y = (v: number) => m.top + ph - (v / yMax) * ph;
  const f = (v: number) => v.toFixed(1);
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${W / 2 - m.right / 2 + m.left / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(title)}</text>`,
  );
  // Grid and y ticks.
  for (let k = 0; k <= 5; k++) {
    const v = (yMax * k) / 5;
    out.push(
      `<line x1="${m.left}" x2="${m.left + pw}" y1="${f(y(v))}" y2="${f(y(v))}" stroke="#e0e0e0"/>`,
      `<text x="${m.left - 8}" y="${f(y(v) + 4)}" text-anchor="end">${+v.toPrecision(6)}</text>`,
    );
  }
  for (const s of sizes)
    out.push(
      `<line x1="${f(x(s))}" x2="${f(x(s))}" y1="${m.top + ph}" y2="${m.top + ph + 5}" stroke="#333"/>`,
      `<text x="${f(x(s))}" y="${m.top + ph + 19}" text-anchor="middle">${escapeXml(formatByteSize(s))}</text>`,
    );
  out.push(
    `<line x1="${m.left}" x2="${m.left + pw}" y1="${m.top + ph}" y2="${m.top + ph}" stroke="#333"/>`,
    `<line x1="${m.left}" x2="${m.left}" y1="${m.top}" y2="${m.top + ph}" stroke="#333"/>`,
    `<text x="${m.left + pw / 2}" y="${H - 10}" text-anchor="middle">GPU memory</text>`,
    `<text transform="translate(18 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">cold-load seconds per hour</text>`,
  );
  policies.forEach((p, i) => {
    const colour = COLOURS[i % COLOURS.length];
    const pts = sizes.flatMap((s) => {
      const r = rows.find((row) => row.policy === p && row.gpuBytes === s);
      return r ? [[x(s), y(r.coldLoadSecondsPerHour)]] : [];
    });
    out.push(
      `<polyline class="policy" data-policy="${escapeXml(p)}" fill="none" stroke="${colour}" stroke-width="2" points="${pts.map(([a, b]) => `${f(a)},${f(b)}`).join(' ')}"/>`,
      ...pts.map(([a, b]) => `<circle cx="${f(a)}" cy="${f(b)}" r="3.5" fill="${colour}"/>`),
      `<line x1="${W - m.right + 20}" x2="${W - m.right + 44}" y1="${m.top + 10 + i * 22}" y2="${m.top + 10 + i * 22}" stroke="${colour}" stroke-width="3"/>`,
      `<text x="${W - m.right + 50}" y="${m.top + 14 + i * 22}">${escapeXml(p === options.defaultPolicy ? `${p} (default)` : p)}</text>`,
    );
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
