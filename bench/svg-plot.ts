// A dependency-free SVG line chart for the benchmarks: axes with "nice" ticks, grid, tick labels,
// two or more series (lines or point markers), a legend above the plot, a title and a subtitle.
// Used by bench/soak.ts.
// Run: not on its own; `svgLineChart({...})` returns the SVG text to write next to the results.

/** One series of a chart: `points` are `[x, y]` in data units. */
export interface PlotSeries {
  name: string;
  color: string;
  points: readonly (readonly [number, number])[];
  /** `'line'` (default) joins the points; `'points'` draws a marker at each one. */
  style?: 'line' | 'points';
  /** SVG `stroke-dasharray` for a line, e.g. `'6 4'`. Default: solid. */
  dash?: string;
}

/** What {@link svgLineChart} draws. */
export interface LineChartOptions {
  title: string;
  /** A second, smaller line under the title. Default: none. */
  subtitle?: string;
  xLabel: string;
  yLabel: string;
  series: readonly PlotSeries[];
  /** Default 960 × 540 px. */
  width?: number;
  height?: number;
  /** Tick label text; default: the number with up to 3 significant decimals. */
  formatX?: (value: number) => string;
  formatY?: (value: number) => string;
  /** Force the y range to start at 0 (default `true`: memory charts read best from zero). */
  yFromZero?: boolean;
}

interface Range {
  min: number;
  max: number;
}

interface Frame {
  left: number;
  top: number;
  width: number;
  height: number;
  x: Range;
  y: Range;
}

const MARGIN = { left: 80, right: 24, top: 92, bottom: 64 };
/** Rough width of a character of the 12 px legend font, to lay legend entries out in a row. */
const LEGEND_CHAR_PX = 6.8;
const FONT = 'font-family="system-ui, sans-serif"';

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function defaultFormat(value: number): string {
  return String(Number(value.toPrecision(6)));
}

/** A step of 1, 2 or 5 × 10^k giving about `count` ticks over `span`. */
function niceStep(span: number, count: number): number {
  const raw = span / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(raw));
  const scaled = raw / power;
  return (scaled <= 1 ? 1 : scaled <= 2 ? 2 : scaled <= 5 ? 5 : 10) * power;
}

/** The data range widened to whole tick steps; a flat or empty range still gets some height. */
function niceRange(values: readonly number[], fromZero: boolean, ticks: number): Range & { step: number } {
  let min = values.length === 0 ? 0 : Math.min(...values);
  let max = values.length === 0 ? 1 : Math.max(...values);
  if (fromZero) min = Math.min(0, min);
  if (max - min < 1e-9) max = min + 1;
  const step = niceStep(max - min, ticks);
  return { min: Math.floor(min / step) * step, max: Math.ceil(max / step) * step, step };
}

function ticksOf(range: Range & { step: number }): number[] {
  const ticks: number[] = [];
  for (let v = range.min; v <= range.max + range.step * 1e-6; v += range.step) ticks.push(v);
  return ticks;
}

function px(frame: Frame, x: number, y: number): [number, number] {
  const sx = frame.left + ((x - frame.x.min) / (frame.x.max - frame.x.min)) * frame.width;
  const sy = frame.top + frame.height - ((y - frame.y.min) / (frame.y.max - frame.y.min)) * frame.height;
  return [Number(sx.toFixed(1)), Number(sy.toFixed(1))];
}

function axes(frame: Frame, xTicks: number[], yTicks: number[], options: LineChartOptions): string[] {
  const formatX = options.formatX ?? defaultFormat;
  const formatY = options.formatY ?? defaultFormat;
  const bottom = frame.top + frame.height;
  const right = frame.left + frame.width;
  const out: string[] = [];
  for (const t of yTicks) {
    const [, y] = px(frame, frame.x.min, t);
    out.push(`<line x1="${frame.left}" y1="${y}" x2="${right}" y2="${y}" stroke="#e3e3e3"/>`);
    out.push(
      `<text x="${frame.left - 8}" y="${y + 4}" text-anchor="end" font-size="12" ${FONT}>${escapeXml(formatY(t))}</text>`,
    );
  }
  for (const t of xTicks) {
    const [x] = px(frame, t, frame.y.min);
    out.push(`<line x1="${x}" y1="${frame.top}" x2="${x}" y2="${bottom}" stroke="#efefef"/>`);
    out.push(
      `<text x="${x}" y="${bottom + 18}" text-anchor="middle" font-size="12" ${FONT}>${escapeXml(formatX(t))}</text>`,
    );
  }
  out.push(
    `<polyline points="${frame.left},${frame.top} ${frame.left},${bottom} ${right},${bottom}" fill="none" stroke="#333"/>`,
  );
  out.push(
    `<text x="${frame.left + frame.width / 2}" y="${bottom + 44}" text-anchor="middle" font-size="13" ${FONT}>${escapeXml(options.xLabel)}</text>`,
  );
  const midY = frame.top + frame.height / 2;
  out.push(
    `<text x="18" y="${midY}" text-anchor="middle" font-size="13" ${FONT} transform="rotate(-90 18 ${midY})">${escapeXml(options.yLabel)}</text>`,
  );
  return out;
}

function seriesShape(frame: Frame, series: PlotSeries): string {
  const points = series.points.map(([x, y]) => px(frame, x, y));
  if (series.style === 'points') {
    return points
      .map(([x, y]) => `<circle cx="${x}" cy="${y}" r="4.5" fill="${series.color}" stroke="#fff"/>`)
      .join('');
  }
  const dash = series.dash === undefined ? '' : ` stroke-dasharray="${series.dash}"`;
  const coords = points.map(([x, y]) => `${x},${y}`).join(' ');
  return `<polyline points="${coords}" fill="none" stroke="${series.color}" stroke-width="1.6"${dash}/>`;
}

function legendMark(series: PlotSeries, x: number, y: number): string {
  if (series.style === 'points')
    return `<circle cx="${x + 10}" cy="${y - 4}" r="4.5" fill="${series.color}"/>`;
  const dash = series.dash === undefined ? '' : ` stroke-dasharray="${series.dash}"`;
  return `<line x1="${x}" y1="${y - 4}" x2="${x + 20}" y2="${y - 4}" stroke="${series.color}" stroke-width="2"${dash}/>`;
}

/** The legend: one row above the plot area, entries left to right. */
function legend(frame: Frame, series: readonly PlotSeries[]): string[] {
  const out: string[] = [];
  const y = frame.top - 16;
  let x = frame.left;
  for (const s of series) {
    out.push(
      `${legendMark(s, x, y)}<text x="${x + 28}" y="${y}" font-size="12" ${FONT}>${escapeXml(s.name)}</text>`,
    );
    x += 28 + s.name.length * LEGEND_CHAR_PX + 24;
  }
  return out;
}

/**
 * A line chart of `series` as a standalone SVG document.
 *
 * @example
 * writeFileSync('memory.svg', svgLineChart({
 *   title: 'Memory', xLabel: 'requests', yLabel: 'MiB',
 *   series: [{ name: 'RSS', color: '#d62728', points: [[0, 80], [1000, 81]] }],
 * }));
 */
export function svgLineChart(options: LineChartOptions): string {
  const width = options.width ?? 960;
  const height = options.height ?? 540;
  const all = options.series.flatMap((s) => s.points);
  const x = niceRange(
    all.map((p) => p[0]),
    false,
    10,
  );
  const y = niceRange(
    all.map((p) => p[1]),
    options.yFromZero ?? true,
    8,
  );
  const frame: Frame = {
    left: MARGIN.left,
    top: MARGIN.top,
    width: width - MARGIN.left - MARGIN.right,
    height: height - MARGIN.top - MARGIN.bottom,
    x,
    y,
  };
  const body = [
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="${width / 2}" y="26" text-anchor="middle" font-size="16" font-weight="600" ${FONT}>${escapeXml(options.title)}</text>`,
    options.subtitle === undefined
      ? ''
      : `<text x="${width / 2}" y="46" text-anchor="middle" font-size="12" fill="#555" ${FONT}>${escapeXml(options.subtitle)}</text>`,
    ...axes(frame, ticksOf(x), ticksOf(y), options),
    ...options.series.map((s) => seriesShape(frame, s)),
    ...legend(frame, options.series),
  ];
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">\n${body.join('\n')}\n</svg>\n`;
}
