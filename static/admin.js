// The operator's console: draws the sales charts with uPlot (served from npm's package by
// the gateway) and asks before ending a viewer's access. Every page works without it.
(function () {
  'use strict';

  const PALETTE = ['#ff5a36', '#3ecf8e', '#4ea8ff', '#ffd166', '#c77dff', '#ff8fab'];

  function readJson(id) {
    const element = document.getElementById(id);
    return element ? JSON.parse(element.textContent) : null;
  }

  // One chart per figure (tickets, takings): one line per stream over the same buckets.
  function drawChart(target, data, strings, field, formatValue) {
    const tzDate = (ts) => uPlot.tzDate(new Date(ts * 1e3), 'UTC');
    // Indonesian order: day before month.
    const format = uPlot.fmtDate(data.bucket === 'hour' ? '{D}/{M} {HH}:{mm}' : '{D}/{M}');
    // uPlot draws times in the browser's zone; the buckets are WIB days and hours.
    const values = [data.x.map((seconds) => seconds + data.offsetSeconds)];
    const series = [{ label: strings.time, value: (u, ts) => (ts == null ? '-' : format(tzDate(ts))) }];
    data.series.forEach((stream, index) => {
      series.push({
        label: stream.label,
        stroke: PALETTE[index % PALETTE.length],
        width: 2,
        points: { show: data.x.length <= 62 },
        value: (u, v) => (v == null ? '-' : formatValue(v)),
      });
      values.push(stream[field]);
    });
    const height = () => Math.round(Math.min(300, Math.max(180, target.clientWidth * 0.42)));
    const options = {
      width: Math.max(260, target.clientWidth),
      height: height(),
      tzDate: tzDate,
      series: series,
      axes: [
        { stroke: '#a9afbb', grid: { stroke: 'rgba(169,175,187,0.15)' },
          values: (u, ticks) => ticks.map((ts) => format(tzDate(ts))) },
        { stroke: '#a9afbb', grid: { stroke: 'rgba(169,175,187,0.15)' },
          size: field === 'takings' ? 76 : 44,
          values: (u, ticks) => ticks.map((v) => (Number.isInteger(v) ? formatValue(v) : '')) },
      ],
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
      legend: { live: true },
    };
    const plot = new uPlot(options, values, target);
    let pending = 0;
    window.addEventListener('resize', () => {
      cancelAnimationFrame(pending);
      pending = requestAnimationFrame(() => {
        plot.setSize({ width: Math.max(260, target.clientWidth), height: height() });
      });
    });
    target.dataset.drawn = 'true';
  }

  function drawCharts() {
    const data = readJson('sales-data');
    const strings = readJson('chart-strings');
    if (!data || !strings || typeof uPlot === 'undefined') return;
    const lang = document.documentElement.lang || 'id';
    const compact = new Intl.NumberFormat(lang, { notation: 'compact' });
    const tickets = document.getElementById('sales-chart');
    const money = document.getElementById('takings-chart');
    if (tickets) drawChart(tickets, data, strings, 'tickets', (v) => String(v));
    if (money) drawChart(money, data, strings, 'takings', (v) => 'Rp ' + compact.format(v));
  }

  function confirmDangerousForms() {
    document.querySelectorAll('form[data-confirm]').forEach((form) => {
      form.addEventListener('submit', (event) => {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    });
  }

  drawCharts();
  confirmDangerousForms();
}());
