/* Draws the admin dashboard's charts with the locally served Chart.js (no CDN).
 * Each <canvas class="dashboard-chart"> names the json_script element holding its data:
 * {"labels": [...], "datasets": [{"label": ..., "data": [...]}]}. Amounts arrive as decimal
 * strings and are turned into numbers only for drawing. */
(function () {
  "use strict";
  var PALETTE = ["#2f6fb0", "#d9822b", "#3a9a5b", "#b33a3a", "#7b5ea7", "#4a9bb5", "#a88a2a"];
  var SEVERITY = { critical: "#b33a3a", warning: "#d9822b", info: "#2f6fb0" };

  function draw(canvas) {
    var source = document.getElementById(canvas.dataset.source);
    if (!source || typeof Chart === "undefined") { return; }
    var data = JSON.parse(source.textContent);
    var type = canvas.dataset.chart;
    var horizontal = canvas.dataset.horizontal === "1";
    var percent = canvas.dataset.percent === "1";
    data.datasets.forEach(function (ds, i) {
      ds.data = ds.data.map(Number);
      if (type === "doughnut") {
        ds.backgroundColor = data.labels.map(function (l, j) { return SEVERITY[l] || PALETTE[j % PALETTE.length]; });
      } else {
        ds.backgroundColor = PALETTE[i % PALETTE.length] + (type === "line" ? "33" : "cc");
        ds.borderColor = PALETTE[i % PALETTE.length];
        ds.borderWidth = type === "line" ? 2 : 1;
        ds.fill = type === "line";
        ds.tension = 0.25;
        ds.pointRadius = type === "line" ? 2 : 0;
        ds.maxBarThickness = 28;
      }
    });
    var options = {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,  /* drawn at once: screenshots and tests see the final picture */
      plugins: { legend: { display: type === "doughnut" || data.datasets.length > 1 } },
    };
    if (type !== "doughnut") {
      options.indexAxis = horizontal ? "y" : "x";
      var valueAxis = { beginAtZero: true };
      if (percent) { valueAxis.suggestedMax = 100; valueAxis.ticks = { callback: function (v) { return v + " %"; } }; }
      options.scales = horizontal ? { x: valueAxis } : { y: valueAxis };
    }
    canvas.chart = new Chart(canvas, { type: type, data: data, options: options });
  }

  function drawAll() {
    document.querySelectorAll("canvas.dashboard-chart").forEach(draw);
    document.body.dataset.chartsDrawn = "1";
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", drawAll);
  } else {
    drawAll();
  }
})();
