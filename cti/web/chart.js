// A grouped bar chart as inline SVG, built with DOM calls (no library, nothing parsed as
// markup, colours from style.css classes: the CSP allows no inline styles).

const SVG = "http://www.w3.org/2000/svg";
const MAX_LABELS = 16; // x-axis labels shown; every bar still has its own <title>
const MAX_BAR = 40; // px: a few groups get bars, not walls
const CHAR_WIDTH = 7; // px: about one character of a label (12px, style.css .chart-label)

function el(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

// A step for about five grid lines: 1, 2 or 5 times a power of ten.
function niceStep(max) {
  const rough = max / 5;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough) || power * 10;
  return Math.max(1, step);
}

// groups: [{label, values: [number per series]}]; series: [{name, cls}];
// title: what the chart shows (its accessible name); barTitle(group, series, value): each
// bar's tooltip.
export function barChart({
  groups,
  series,
  title,
  barTitle,
  id = "chart",
  width = 960,
  height = 250,
}) {
  const margin = { top: 12, right: 12, bottom: 36, left: 44 };
  const plotWidth = width - margin.left - margin.right;
  const plotHeight = height - margin.top - margin.bottom;
  const max = Math.max(1, ...groups.flatMap((group) => group.values.map((v) => Number(v) || 0)));
  const step = niceStep(max);
  const top = Math.ceil(max / step) * step;
  const y = (value) => margin.top + plotHeight - (value / top) * plotHeight;

  const titleId = `${id}-title`;
  const svg = el("svg", {
    class: "bar-chart",
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-labelledby": titleId,
    id,
  });
  svg.append(el("title", { id: titleId }, title));

  const grid = el("g", { class: "chart-grid" });
  for (let value = 0; value <= top; value += step) {
    grid.append(
      el("line", { x1: margin.left, x2: width - margin.right, y1: y(value), y2: y(value) }),
      el(
        "text",
        { x: margin.left - 6, y: y(value) + 4, "text-anchor": "end", class: "chart-tick" },
        String(value),
      ),
    );
  }
  svg.append(grid);

  const band = plotWidth / Math.max(1, groups.length);
  const barWidth = Math.max(1, Math.min(MAX_BAR, (band * 0.8) / series.length));
  // Labels far enough apart not to run into each other (a month of dates, say).
  const longest = Math.max(1, ...groups.map((group) => String(group.label).length));
  const room = Math.floor(plotWidth / (longest * CHAR_WIDTH + 24));
  const every = Math.max(1, Math.ceil(groups.length / Math.max(1, Math.min(MAX_LABELS, room))));
  const bars = el("g", { class: "chart-bars" });
  const labels = el("g", { class: "chart-labels" });
  groups.forEach((group, index) => {
    const left = margin.left + index * band + (band - barWidth * series.length) / 2;
    const g = el("g", { class: "chart-group", "data-group": group.label });
    series.forEach((one, s) => {
      const value = Number(group.values[s]) || 0;
      const rect = el("rect", {
        class: `bar ${one.cls}`,
        x: left + s * barWidth,
        y: y(value),
        width: Math.max(1, barWidth - 1),
        height: Math.max(0, margin.top + plotHeight - y(value)),
        "data-series": one.key,
        "data-value": value,
      });
      rect.append(el("title", {}, barTitle(group, one, value)));
      g.append(rect);
    });
    bars.append(g);
    if (index % every === 0) {
      const half = (String(group.label).length * CHAR_WIDTH) / 2;
      labels.append(
        el(
          "text",
          {
            // Under its bars, but not off the chart's right edge.
            x: Math.min(margin.left + index * band + band / 2, width - half),
            y: height - margin.bottom + 16,
            "text-anchor": "middle",
            class: "chart-label",
          },
          group.label,
        ),
      );
    }
  });
  svg.append(
    bars,
    labels,
    el("line", {
      class: "chart-axis",
      x1: margin.left,
      x2: width - margin.right,
      y1: y(0),
      y2: y(0),
    }),
  );
  return svg;
}
