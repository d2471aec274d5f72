// The operator's console: draws the sales charts with uPlot (served from npm's package by
// the gateway) and asks before ending a viewer's access. Every page works without it.
(function () {
  'use strict';

  const PALETTE = ['#ff5a36', '#3ecf8e', '#4ea8ff', '#ffd166', '#c77dff', '#ff8fab'];

  function readJson(id) {
    const element = document.getElementById(id);
    return element ? JSON.parse(element.textContent) : null;
  }

  const HOUR_S = 3600;
  const DAY_S = 24 * HOUR_S;
  const DAILY_TICKS = [1, 2, 3, 7, 14, 28, 56, 91].map((days) => days * DAY_S);
  const HOURLY_TICKS = [1, 2, 3, 4, 6, 12].map((hours) => hours * HOUR_S).concat(DAILY_TICKS);

  // Each day is named once along the axis: on its first tick, with the hour under it when
  // the ticks are hours; the day's later ticks show the hour alone. The labels drawn are
  // kept on the chart's element, where a reader of the page (or a test) can see them.
  function dayLabels(target, dates, dayOf, timeOf) {
    const hourly = dates.some((date) => date.getHours() !== 0 || date.getMinutes() !== 0);
    let lastDay = null;
    const labels = dates.map((date) => {
      const day = dayOf(date);
      const first = day !== lastDay;
      lastDay = day;
      if (!hourly) return day;
      return first ? day + '\n' + timeOf(date) : timeOf(date);
    });
    target.dataset.ticks = JSON.stringify(labels);
    return labels;
  }

  // One chart per figure (tickets, takings): one line per stream over the same buckets.
  function drawChart(target, data, strings, field, formatValue) {
    const tzDate = (ts) => uPlot.tzDate(new Date(ts * 1e3), 'UTC');
    // Indonesian order: day before month.
    const format = uPlot.fmtDate(data.bucket === 'hour' ? '{D}/{M} {HH}:{mm}' : '{D}/{M}');
    const dayOf = uPlot.fmtDate('{D}/{M}');
    const timeOf = uPlot.fmtDate('{HH}:{mm}');
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
          // Ticks fall on whole hours or whole days, never between days of a daily chart.
          incrs: data.bucket === 'hour' ? HOURLY_TICKS : DAILY_TICKS,
          values: (u, ticks) => dayLabels(target, ticks.map(tzDate), dayOf, timeOf) },
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
