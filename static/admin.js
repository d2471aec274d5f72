// The operator's console: draws the sales chart with uPlot (served from npm's package by
// the gateway) and asks before ending a viewer's access. Every page works without it.
(function () {
  'use strict';

  function readJson(id) {
    const element = document.getElementById(id);
    return element ? JSON.parse(element.textContent) : null;
  }

  function drawChart() {
    const data = readJson('sales-data');
    const strings = readJson('chart-strings');
    const target = document.getElementById('sales-chart');
    if (!data || !target || typeof uPlot === 'undefined') return;
    // uPlot draws times in the browser's zone; the buckets are WIB days and hours.
    const shifted = data.x.map((seconds) => seconds + data.offsetSeconds);
    const palette = ['#ff5a36', '#3ecf8e', '#4ea8ff', '#ffd166', '#c77dff', '#ff8fab'];
    const series = [{ label: strings ? strings.time : '', value: (u, ts) => (ts == null ? '-' : format(options.tzDate(ts))) }];
    const values = [shifted];
    data.series.forEach((stream, index) => {
      series.push({
        label: stream.label,
        stroke: palette[index % palette.length],
        width: 2,
        points: { show: data.x.length <= 62 },
        value: (u, v) => (v == null ? '-' : String(v)),
      });
      values.push(stream.tickets);
    });
    // Indonesian order: day before month.
    const format = uPlot.fmtDate(data.bucket === 'hour' ? '{D}/{M} {HH}:{mm}' : '{D}/{M}');
    const options = {
      width: Math.max(280, target.clientWidth),
      height: Math.round(Math.min(320, Math.max(200, target.clientWidth * 0.45))),
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), 'UTC'),
      series: series,
      axes: [
        { stroke: '#a9afbb', grid: { stroke: 'rgba(169,175,187,0.15)' },
          values: (u, ticks) => ticks.map((ts) => format(options.tzDate(ts))) },
        { stroke: '#a9afbb', grid: { stroke: 'rgba(169,175,187,0.15)' },
          label: strings ? strings.tickets : '', size: 50,
          values: (u, ticks) => ticks.map((v) => (Number.isInteger(v) ? String(v) : '')) },
      ],
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
      legend: { live: true },
    };
    const plot = new uPlot(options, values, target);
    let pending = 0;
    window.addEventListener('resize', () => {
      cancelAnimationFrame(pending);
      pending = requestAnimationFrame(() => {
        plot.setSize({ width: Math.max(280, target.clientWidth), height: options.height });
      });
    });
    target.dataset.drawn = 'true';
  }

  function confirmDangerousForms() {
    document.querySelectorAll('form[data-confirm]').forEach((form) => {
      form.addEventListener('submit', (event) => {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    });
  }

  drawChart();
  confirmDangerousForms();
}());
