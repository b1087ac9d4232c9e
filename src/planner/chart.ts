import { formatByteSize } from './byte-size';
import type { CapacityPlan, PlanRow } from './capacity-plan';
import { describeLogs } from './rotated-logs';

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

/** Tableau 10's first colours: distinct for most colour-blind readers too, with the dashes and markers. */
const COLOURS = ['#4c78a8', '#f58518', '#54a24b', '#e45756', '#72b7b2', '#b279a2', '#9d755d'];
/** One dash pattern per policy, so a line stays itself where colours are hard to tell apart. */
const DASHES = ['none', '9 4', '2 3', '12 3 3 3', '5 5', '1 4', '14 4 2 4 2 4'];
const MARKERS = ['circle', 'square', 'triangle', 'diamond', 'triangle-down'] as const;
type Marker = (typeof MARKERS)[number];

/** Lines whose points at one size are closer than this (px) coincide; they are drawn SPREAD_PX apart. */
const COINCIDE_PX = 2;
const SPREAD_PX = 3;

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

/** The largest binary unit the smallest size is at least one of, so every tick reads as a plain number. */
function axisUnit(smallest: number): { bytes: number; name: string } {
  for (const [bytes, name] of [
    [1024 ** 4, 'TiB'],
    [1024 ** 3, 'GiB'],
    [1024 ** 2, 'MiB'],
    [1024, 'KiB'],
  ] as const)
    if (smallest >= bytes) return { bytes, name };
  return { bytes: 1, name: 'bytes' };
}

const f = (v: number) => v.toFixed(1);

/** A marker of `shape` centred on (x, y), with a tooltip when `tooltip` is given. */
function marker(
  shape: Marker,
  x: number,
  y: number,
  colour: string,
  attrs: string,
  tooltip?: string,
): string {
  let tag: string;
  let geometry: string;
  const path = (pts: [number, number][]) =>
    `d="M${pts.map(([a, b]) => `${f(x + a)},${f(y + b)}`).join(' L')} Z"`;
  switch (shape) {
    case 'circle':
      [tag, geometry] = ['circle', `cx="${f(x)}" cy="${f(y)}" r="4"`];
      break;
    case 'square':
      [tag, geometry] = ['rect', `x="${f(x - 3.5)}" y="${f(y - 3.5)}" width="7" height="7"`];
      break;
    case 'triangle':
      [tag, geometry] = [
        'path',
        path([
          [0, -4.5],
          [4.5, 3.5],
          [-4.5, 3.5],
        ]),
      ];
      break;
    case 'diamond':
      [tag, geometry] = [
        'path',
        path([
          [0, -5],
          [5, 0],
          [0, 5],
          [-5, 0],
        ]),
      ];
      break;
    case 'triangle-down':
      [tag, geometry] = [
        'path',
        path([
          [0, 4.5],
          [4.5, -3.5],
          [-4.5, -3.5],
        ]),
      ];
      break;
  }
  const open = `<${tag} ${geometry} fill="${colour}" stroke="#ffffff" stroke-width="1"${attrs ? ` ${attrs}` : ''} data-marker="${shape}"`;
  return tooltip === undefined ? `${open}/>` : `${open}><title>${escapeXml(tooltip)}</title></${tag}>`;
}

export interface ChartOptions {
  title?: string;
  /** The agent's policy, marked "(default)" in the legend. */
  defaultPolicy?: string;
  /** The files the plan read, named (file names only) under the title. */
  logs?: string[];
}

/**
 * An SVG line chart of cold-load seconds per hour (lower is better) against GPU memory, one line per
 * policy: axis titles with units, the logs and request count it came from, a legend. Each policy has its
 * own colour, dash pattern and marker shape; where lines coincide (closer than 2 px at a size) their
 * points are drawn 3 px apart, each keeping its exact value in its tooltip, and a note under the chart
 * says which. Sizes the headroom takes whole are ticked but not plotted, with a note. Plain SVG 1.1 text,
 * no script and no external resources, so it renders the same in a browser, on GitHub and in a viewer.
 */
export function renderChart(
  plan: Pick<CapacityPlan, 'rows' | 'requests' | 'models' | 'hours' | 'headroomBytes'>,
  options: ChartOptions = {},
): string {
  const rows: PlanRow[] = plan.rows;
  const title = options.title ?? 'Cold-load seconds per hour by GPU memory';
  const sizes = [...new Set(rows.map((r) => r.gpuBytes))].sort((a, b) => a - b);
  const policies = [...new Set(rows.map((r) => r.policy))];
  const noRoom = sizes.filter((s) => rows.some((r) => r.gpuBytes === s && r.noRoom));
  const plotted = rows.filter((r) => !r.noRoom);
  const yMax = niceMax(Math.max(0, ...plotted.map((r) => r.coldLoadSecondsPerHour)));

  const headroom = formatByteSize(plan.headroomBytes);

  // Where each point goes, before spreading coinciding ones.
  const W = 860;
  const m = { left: 80, right: 220, top: 82, bottom: 62 };
  const pw = W - m.left - m.right;
  const ph = 330;
  // The x axis spans the sizes plotted: a size the headroom takes whole has only its note.
  const axisSizes = sizes.some((sz) => !noRoom.includes(sz))
    ? sizes.filter((sz) => !noRoom.includes(sz))
    : sizes;
  const xMin = axisSizes[0] ?? 0;
  const xMax = axisSizes[axisSizes.length - 1] ?? 0;
  const x = (b: number) => m.left + (xMax > xMin ? ((b - xMin) / (xMax - xMin)) * pw : pw / 2);
  const y = (v: number) => m.top + ph - (v / yMax) * ph;
  const point = new Map<string, { row: PlanRow; px: number; py: number; offset: number }>();
  const key = (p: string, s: number) => `${s}\u0000${p}`;
  for (const r of plotted)
    point.set(key(r.policy, r.gpuBytes), {
      row: r,
      px: x(r.gpuBytes),
      py: y(r.coldLoadSecondsPerHour),
      offset: 0,
    });

  // Points within COINCIDE_PX of the topmost of their group at one size coincide: spread them
  // symmetrically in policy order (each line keeps its side), and say so under the chart.
  const coincide = new Map<string, number[]>();
  for (const s of sizes) {
    const here = policies.flatMap((p, i) => {
      const pt = point.get(key(p, s));
      return pt ? [{ p, i, pt }] : [];
    });
    here.sort((a, b) => a.pt.py - b.pt.py || a.i - b.i);
    for (let start = 0; start < here.length;) {
      let end = start + 1;
      while (end < here.length && here[end].pt.py - here[start].pt.py < COINCIDE_PX) end++;
      const group = here.slice(start, end).sort((a, b) => a.i - b.i);
      if (group.length > 1) {
        group.forEach((e, rank) => (e.pt.offset = (rank - (group.length - 1) / 2) * SPREAD_PX));
        const v = group[0].pt.row.coldLoadSecondsPerHour;
        const same = group.every((e) => e.pt.row.coldLoadSecondsPerHour === v);
        const names = `${group.map((e) => e.p).join(', ')}: ${same ? 'the same value' : `within ${COINCIDE_PX} px`}`;
        coincide.set(names, [...(coincide.get(names) ?? []), s]);
      }
      start = end;
    }
  }
  const plottedSizes = sizes.filter((s) => !noRoom.includes(s));
  const notes: string[] = [];
  if (coincide.size > 0) {
    notes.push(`Where lines coincide they are drawn ${SPREAD_PX} px apart (the tooltips keep the values):`);
    for (const [names, at] of coincide)
      notes.push(
        `  ${names} ${at.length === plottedSizes.length && at.length > 1 ? 'at every size' : `at ${at.map(formatByteSize).join(', ')}`}`,
      );
  }
  if (noRoom.length > 0)
    notes.push(
      `${noRoom.map(formatByteSize).join(', ')}: no memory left for models after ${headroom} headroom (not plotted)`,
    );

  const H = m.top + ph + m.bottom + notes.length * 16 + (notes.length > 0 ? 8 : 0);
  const source = options.logs && options.logs.length > 0 ? describeLogs(options.logs) : 'an access log';
  const subtitle = `Replay of ${source}: ${plan.requests.toLocaleString('en-US')} requests for ${plan.models.toLocaleString('en-US')} models over ${plan.hours >= 1 ? `${plan.hours.toFixed(1)} h` : `${(plan.hours * 60).toFixed(1)} min`}`;
  const subtitle2 = `${plan.headroomBytes > 0 ? `Each GPU size less ${headroom} headroom for activations` : 'Models get each whole GPU size (no headroom)'}. Lower is better.`;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<title>${escapeXml(title)}</title>`,
    `<desc>${escapeXml(`${subtitle}. ${subtitle2}`)}</desc>`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${m.left}" y="24" font-size="16" font-weight="bold">${escapeXml(title)}</text>`,
    `<text class="source" x="${m.left}" y="44" fill="#333333">${escapeXml(subtitle)}</text>`,
    `<text x="${m.left}" y="61" fill="#333333">${escapeXml(subtitle2)}</text>`,
  );
  // Grid and y ticks.
  for (let k = 0; k <= 5; k++) {
    const v = (yMax * k) / 5;
    out.push(
      `<line x1="${m.left}" x2="${m.left + pw}" y1="${f(y(v))}" y2="${f(y(v))}" stroke="#e6e6e6"/>`,
      `<text x="${m.left - 8}" y="${f(y(v) + 4)}" text-anchor="end">${+v.toPrecision(6)}</text>`,
    );
  }
  const unit = axisUnit(axisSizes[0] ?? 1024 ** 3);
  for (const s of axisSizes) {
    const label = `${+(s / unit.bytes).toFixed(2)}`;
    out.push(
      `<line x1="${f(x(s))}" x2="${f(x(s))}" y1="${m.top + ph}" y2="${m.top + ph + 5}" stroke="#333333"/>`,
      `<text x="${f(x(s))}" y="${m.top + ph + 19}" text-anchor="middle"${noRoom.includes(s) ? ' fill="#999999"' : ''}>${escapeXml(label)}</text>`,
    );
  }
  out.push(
    `<line x1="${m.left}" x2="${m.left + pw}" y1="${m.top + ph}" y2="${m.top + ph}" stroke="#333333"/>`,
    `<line x1="${m.left}" x2="${m.left}" y1="${m.top}" y2="${m.top + ph}" stroke="#333333"/>`,
    `<text class="axis-title" data-axis="x" x="${m.left + pw / 2}" y="${m.top + ph + 42}" text-anchor="middle">GPU memory (${unit.name})</text>`,
    `<text class="axis-title" data-axis="y" transform="translate(22 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">cold-load seconds per hour (s/h), lower is better</text>`,
  );
  if (plotted.length === 0)
    out.push(
      `<text x="${m.left + pw / 2}" y="${m.top + ph / 2}" text-anchor="middle" fill="#666666">no GPU size tried leaves memory for models after ${escapeXml(headroom)} headroom</text>`,
    );
  // A policy whose line is another's at every size says so in the legend, naming the first such policy.
  const sameAs = new Map<string, string>();
  const valuesOf = (p: string) =>
    plottedSizes.map((s) => point.get(key(p, s))?.row.coldLoadSecondsPerHour ?? NaN);
  policies.forEach((p, i) => {
    const mine = valuesOf(p);
    if (mine.length === 0 || mine.some((v) => Number.isNaN(v))) return;
    const first = policies
      .slice(0, i)
      .find((q) => !sameAs.has(q) && valuesOf(q).every((v, k) => v === mine[k]));
    if (first !== undefined) sameAs.set(p, first);
  });
  let ly = m.top + 10;
  policies.forEach((p, i) => {
    const colour = COLOURS[i % COLOURS.length];
    const dash = DASHES[i % DASHES.length];
    const shape = MARKERS[i % MARKERS.length];
    const label = p === options.defaultPolicy ? `${p} (default)` : p;
    const pts = sizes.flatMap((s) => {
      const pt = point.get(key(p, s));
      return pt ? [pt] : [];
    });
    out.push(
      `<polyline class="policy" data-policy="${escapeXml(p)}" fill="none" stroke="${colour}" stroke-width="2" stroke-dasharray="${dash}" stroke-linejoin="round" points="${pts.map((pt) => `${f(pt.px)},${f(pt.py + pt.offset)}`).join(' ')}"/>`,
      ...pts.map((pt) =>
        marker(
          shape,
          pt.px,
          pt.py + pt.offset,
          colour,
          `class="point" data-policy="${escapeXml(p)}" data-gpu-bytes="${pt.row.gpuBytes}" data-value="${pt.row.coldLoadSecondsPerHour.toFixed(1)}"`,
          `${label} at ${formatByteSize(pt.row.gpuBytes)}: ${pt.row.coldLoadSecondsPerHour.toFixed(1)} cold-load s/h, hit ratio ${pt.row.hitRatio.toFixed(3)}`,
        ),
      ),
    );
    const lx = m.left + pw + 24;
    out.push(
      `<line class="legend" data-policy="${escapeXml(p)}" x1="${lx}" x2="${lx + 40}" y1="${ly}" y2="${ly}" stroke="${colour}" stroke-width="2" stroke-dasharray="${dash}"/>`,
      marker(shape, lx + 20, ly, colour, ''),
      `<text x="${lx + 48}" y="${ly + 4}">${escapeXml(label)}</text>`,
    );
    const same = sameAs.get(p);
    if (same !== undefined)
      out.push(
        `<text class="legend-note" data-policy="${escapeXml(p)}" x="${lx + 48}" y="${ly + 18}" font-size="10" fill="#555555">${escapeXml(`same line as ${same}`)}</text>`,
      );
    ly += same !== undefined ? 36 : 24;
  });
  notes.forEach((n, k) =>
    out.push(
      `<text class="note" x="${m.left}" y="${m.top + ph + m.bottom + 6 + k * 16}" font-size="11" fill="#333333" xml:space="preserve">${escapeXml(n)}</text>`,
    ),
  );
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
