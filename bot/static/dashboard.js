// Draws the dashboard's two charts from the JSON the server put in the page.
// When both are drawn, <body data-charts-drawn="2"> says so (the browser test reads it).
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("chart-data").textContent);
  // One colour per tier, in the configured order (smallest model first).
  const palette = ["#2da44e", "#0969da", "#bf8700", "#8250df", "#cf222e", "#1b7c83", "#6e7781"];
  const colour = (n) => palette[n % palette.length];

  function stackedBars(id, series, yAxis, tooltip) {
    return new Chart(document.getElementById(id), {
      type: "bar",
      data: {
        labels: data.days,
        datasets: data.tiers.map((tier, n) => ({ label: tier, data: series[tier], backgroundColor: colour(n) })),
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        scales: { x: { stacked: true }, y: Object.assign({ stacked: true, beginAtZero: true }, yAxis) },
        plugins: { tooltip: { callbacks: { label: tooltip } } },
      },
    });
  }

  const percent = {};
  for (const tier of data.tiers) percent[tier] = data.solved_share[tier].map((share) => Math.round(share * 1000) / 10);
  const charts = [
    stackedBars("solved-chart", percent, { max: 100, ticks: { callback: (v) => v + "%" } }, (item) => {
      const jobs = data.jobs[item.dataIndex];
      return `${item.dataset.label}: ${item.raw}% of ${jobs} job${jobs === 1 ? "" : "s"}`;
    }),
    stackedBars("tokens-chart", data.tokens, {}, (item) => `${item.dataset.label}: ${item.raw.toLocaleString()} tokens`),
  ];
  document.body.dataset.chartsDrawn = String(charts.length);
})();
