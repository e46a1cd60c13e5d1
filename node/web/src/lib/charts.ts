// Small bar charts drawn as inline SVG (no chart library). Every chart is a <figure> with a
// caption, an SVG that names itself (role="img", <title>, <desc>), a legend, and the numbers
// behind it as a table, so a screen reader (or anyone) can read exactly what is drawn.

import { h } from "./dom";

const SVG = "http://www.w3.org/2000/svg";

export interface Series {
  name: string;
  color: string;
  values: number[];
}

export interface BarChart {
  /** Short name, used for ids and test hooks (letters, digits and dashes). */
  id: string;
  title: string;
  /** Column or row names: days or hospitals. */
  categories: string[];
  /** Heading of the first table column ("Day", "Hospital"). */
  categoryLabel: string;
  series: Series[];
  /** "columns": one column per category (days); "rows": one bar per category (hospitals). */
  layout: "columns" | "rows";
  /** Shown instead of an empty chart. */
  empty: string;
  /** Drawn width in CSS pixels (the SVG's user units are pixels, so text keeps its size). */
  width?: number;
}

type SvgAttrs = Record<string, string | number>;

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: SvgAttrs = {}, ...children: (Node | string)[]): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  for (const child of children) el.append(typeof child === "string" ? document.createTextNode(child) : child);
  return el;
}

/** The smallest "nice" number ≥ max (1, 2, 5 × 10^k), so ticks land on round values. */
export function niceMax(max: number): number {
  if (max <= 0) return 1;
  const step = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 5, 10]) if (m * step >= max) return m * step;
  return 10 * step;
}

/** Tick values from 0 to `top` (a niceMax value) on whole-number steps. */
export function ticks(top: number): number[] {
  const step = top <= 5 ? 1 : top / 5;
  return Array.from({ length: Math.round(top / step) + 1 }, (_, i) => i * step);
}

function totals(chart: BarChart): number[] {
  return chart.categories.map((_, i) => chart.series.reduce((sum, s) => sum + (s.values[i] ?? 0), 0));
}

function describe(chart: BarChart): string {
  const parts = chart.series.map((s) => `${s.values.reduce((a, b) => a + b, 0)} ${s.name.toLowerCase()}`);
  const span =
    chart.layout === "columns" && chart.categories.length > 0
      ? `from ${chart.categories[0]} to ${chart.categories[chart.categories.length - 1]}`
      : `for ${chart.categories.length} ${chart.categories.length === 1 ? "entry" : "entries"}`;
  return `${chart.title} ${span}: ${parts.join(", ")} in all. The table below lists every number.`;
}

function columns(chart: BarChart, titleId: string, descId: string): SVGSVGElement {
  const width = Math.round(chart.width ?? 640);
  const height = 240;
  const left = 44;
  const right = 8;
  const top = 12;
  const bottom = 44;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const max = niceMax(Math.max(0, ...totals(chart)));
  const n = chart.categories.length;
  const slot = plotW / Math.max(1, n);
  const barW = Math.max(2, Math.min(48, slot * 0.7));
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-labelledby": `${titleId} ${descId}`, class: "chart" });
  root.append(svg("title", { id: titleId }, chart.title), svg("desc", { id: descId }, describe(chart)));
  for (const t of ticks(max)) {
    const y = top + plotH - (t / max) * plotH;
    root.append(
      svg("line", { x1: left, x2: width - right, y1: y, y2: y, stroke: "#c8c8c8", "stroke-width": 1 }),
      svg("text", { x: left - 6, y: y + 4, "text-anchor": "end", "font-size": 13, fill: "#1a1a1a" }, String(t)),
    );
  }
  // Label only as many categories as fit (about 48 px each); the table has them all.
  const every = Math.max(1, Math.ceil(n / Math.max(1, Math.floor(plotW / 48))));
  chart.categories.forEach((name, i) => {
    const x = left + i * slot + (slot - barW) / 2;
    let y = top + plotH;
    for (const s of chart.series) {
      const value = s.values[i] ?? 0;
      if (value <= 0) continue;
      const barH = (value / max) * plotH;
      y -= barH;
      root.append(
        svg(
          "rect",
          { x, y, width: barW, height: barH, fill: s.color, "data-series": s.name, "data-category": name, "data-value": value },
          svg("title", {}, `${name}: ${value} ${s.name.toLowerCase()}`),
        ),
      );
    }
    if (i % every === 0) {
      root.append(
        svg("text", { x: left + i * slot + slot / 2, y: height - bottom + 18, "text-anchor": "middle", "font-size": 13, fill: "#1a1a1a" }, name.slice(5)),
      );
    }
  });
  root.append(svg("line", { x1: left, x2: width - right, y1: top + plotH, y2: top + plotH, stroke: "#1a1a1a", "stroke-width": 1 }));
  if (n > 0) {
    root.append(
      svg("text", { x: left, y: height - 6, "font-size": 13, fill: "#4a4a4a" }, `${chart.categories[0].slice(0, 4)} (month-day, UTC)`),
    );
  }
  return root;
}

function rows(chart: BarChart, titleId: string, descId: string): SVGSVGElement {
  const width = Math.round(chart.width ?? 640);
  const rowH = 34;
  const labelW = Math.min(190, Math.round(width * 0.38));
  const right = 56;
  const top = 6;
  const n = chart.categories.length;
  const height = top * 2 + n * rowH;
  const plotW = width - labelW - right;
  const max = niceMax(Math.max(0, ...totals(chart)));
  const all = totals(chart);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-labelledby": `${titleId} ${descId}`, class: "chart" });
  root.append(svg("title", { id: titleId }, chart.title), svg("desc", { id: descId }, describe(chart)));
  chart.categories.forEach((name, i) => {
    const y = top + i * rowH;
    const fit = Math.max(6, Math.floor(labelW / 8.5));
    const label = name.length > fit ? `${name.slice(0, fit - 1)}…` : name;
    root.append(svg("text", { x: labelW - 8, y: y + rowH / 2 + 5, "text-anchor": "end", "font-size": 14, fill: "#1a1a1a" }, label));
    let x = labelW;
    for (const s of chart.series) {
      const value = s.values[i] ?? 0;
      if (value <= 0) continue;
      const barW = (value / max) * plotW;
      root.append(
        svg(
          "rect",
          { x, y: y + 6, width: barW, height: rowH - 12, fill: s.color, "data-series": s.name, "data-category": name, "data-value": value },
          svg("title", {}, `${name}: ${value} ${s.name.toLowerCase()}`),
        ),
      );
      x += barW;
    }
    root.append(svg("text", { x: x + 6, y: y + rowH / 2 + 5, "font-size": 14, fill: "#1a1a1a" }, String(all[i])));
  });
  root.append(svg("line", { x1: labelW, x2: labelW, y1: 0, y2: height, stroke: "#1a1a1a", "stroke-width": 1 }));
  return root;
}

function legend(chart: BarChart): HTMLElement {
  return h(
    "ul",
    { class: "legend" },
    ...chart.series.map((s) => {
      const swatch = svg("svg", { width: 14, height: 14, viewBox: "0 0 14 14", "aria-hidden": "true", focusable: "false" }, svg("rect", { width: 14, height: 14, fill: s.color }));
      return h("li", {}, swatch, ` ${s.name}`);
    }),
  );
}

function table(chart: BarChart): HTMLTableElement {
  const all = totals(chart);
  const multi = chart.series.length > 1;
  return h(
    "table",
    { class: "chart-table", "data-chart": chart.id },
    h("caption", {}, `${chart.title}: the numbers`),
    h(
      "thead",
      {},
      h("tr", {}, h("th", { scope: "col" }, chart.categoryLabel), ...chart.series.map((s) => h("th", { scope: "col" }, s.name)), multi ? h("th", { scope: "col" }, "Total") : null),
    ),
    h(
      "tbody",
      {},
      ...chart.categories.map((name, i) =>
        h(
          "tr",
          {},
          h("th", { scope: "row" }, name),
          ...chart.series.map((s) => h("td", { "data-series": s.name }, String(s.values[i] ?? 0))),
          multi ? h("td", {}, String(all[i])) : null,
        ),
      ),
    ),
  );
}

/** A figure: caption, SVG bars (or the empty sentence), legend, and a table of the numbers. */
export function barChart(chart: BarChart): HTMLElement {
  const titleId = `chart-${chart.id}-title`;
  const descId = `chart-${chart.id}-desc`;
  const figure = h("figure", { class: "chart-figure", "data-chart": chart.id }, h("figcaption", {}, chart.title));
  if (chart.categories.length === 0 || totals(chart).every((t) => t === 0)) {
    figure.append(h("p", { class: "muted" }, chart.empty));
    return figure;
  }
  figure.append(
    chart.layout === "columns" ? columns(chart, titleId, descId) : rows(chart, titleId, descId),
    legend(chart),
    h("details", { class: "chart-numbers" }, h("summary", {}, "Show the numbers"), table(chart)),
  );
  return figure;
}

/** Every UTC day ("YYYY-MM-DD") from the first to the last of `days`, so quiet days show as
 * gaps; just the given days, sorted, when they span more than a year. */
export function dayRange(days: string[]): string[] {
  const sorted = [...new Set(days)].sort();
  if (sorted.length < 2) return sorted;
  const start = Date.parse(`${sorted[0]}T00:00:00Z`);
  const end = Date.parse(`${sorted[sorted.length - 1]}T00:00:00Z`);
  if (!Number.isFinite(start) || !Number.isFinite(end) || end - start > 366 * 86_400_000) return sorted;
  const every: string[] = [];
  for (let t = start; t <= end; t += 86_400_000) every.push(new Date(t).toISOString().slice(0, 10));
  return every;
}
