// hookrelay admin UI charts: the last hour of GET /admin/api/series (one point every few
// seconds, plus the interval in progress), drawn as inline SVG. No library, no CDN: the UI
// works offline. Refreshed every 2 s while the page is open.
'use strict';

(() => {
  const NS = 'http://www.w3.org/2000/svg';
  const REFRESH_MS = 2000;
  const HEIGHT = 130;
  const PAD = { l: 44, r: 8, t: 8, b: 18 };
  // Each chart: its element, the unit of its values, and the series it draws (API key, name).
  const CHARTS = [
    { id: 'chart-rates', unit: '/s', series: [['received', 'received'], ['delivered', 'delivered'], ['failed', 'failed']] },
    { id: 'chart-queue', unit: '', series: [['queue', 'waiting']] },
    { id: 'chart-latency', unit: ' ms', series: [['p50_ms', 'p50'], ['p99_ms', 'p99']] },
  ];

  function svg(tag, attrs, text) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text != null) e.textContent = text;
    return e;
  }

  // niceMax rounds v up to 1, 2 or 5 times a power of ten, so the grid has round labels.
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function fmt(v) {
    if (v == null) return '–';
    if (v >= 100 || Number.isInteger(v)) return String(Math.round(v));
    if (v >= 10) return v.toFixed(1);
    return String(Math.round(v * 100) / 100);
  }

  // ago labels a time before now: -45s, -5m.
  function ago(ms) {
    return ms < 120000 ? `-${Math.round(ms / 1000)}s` : `-${Math.round(ms / 60000)}m`;
  }

  // draw renders one chart over [end - span, end] from pts (oldest first).
  function draw(def, pts, span, end) {
    const fig = document.getElementById(def.id);
    if (!fig) return;
    const box = fig.querySelector('svg');
    const w = Math.max(240, Math.round(box.getBoundingClientRect().width) || 480);
    box.setAttribute('viewBox', `0 0 ${w} ${HEIGHT}`);
    box.setAttribute('height', HEIGHT);
    let max = 0;
    for (const p of pts) for (const [k] of def.series) if (p[k] != null && p[k] > max) max = p[k];
    max = niceMax(max);
    const iw = w - PAD.l - PAD.r, ih = HEIGHT - PAD.t - PAD.b;
    const x = (t) => PAD.l + ((t - (end - span)) / span) * iw;
    const y = (v) => PAD.t + (1 - v / max) * ih;
    const kids = [];
    for (const f of [0, 0.5, 1]) {
      const v = max * f;
      kids.push(svg('line', { class: 'grid', x1: PAD.l, x2: w - PAD.r, y1: y(v), y2: y(v) }));
      kids.push(svg('text', { class: 'axis', x: PAD.l - 6, y: y(v) + 4, 'text-anchor': 'end' }, fmt(v)));
    }
    for (const [f, label, anchor] of [[0, ago(span), 'start'], [0.5, ago(span / 2), 'middle'], [1, 'now', 'end']]) {
      kids.push(svg('text', { class: 'axis', x: PAD.l + f * iw, y: HEIGHT - 4, 'text-anchor': anchor }, label));
    }
    const legend = fig.querySelector('.legend');
    const keys = [];
    for (const [k, name] of def.series) {
      const coords = pts.filter((p) => p[k] != null && p.t >= end - span)
        .map((p) => `${x(p.t).toFixed(1)},${y(p[k]).toFixed(1)}`);
      kids.push(svg('polyline', { class: 'line s-' + k, 'data-series': k, points: coords.join(' ') }));
      let last = null;
      for (let i = pts.length - 1; i >= 0; i--) if (pts[i][k] != null) { last = pts[i][k]; break; }
      const key = document.createElement('span');
      key.className = 'key s-' + k;
      key.dataset.series = k;
      key.dataset.last = last == null ? '' : String(last);
      key.textContent = `${name} ${fmt(last)}${last == null ? '' : def.unit}`;
      keys.push(key);
    }
    box.replaceChildren(...kids);
    legend.replaceChildren(...keys);
    fig.dataset.points = String(pts.length);
  }

  let timer = null;
  async function refresh() {
    try {
      const res = await fetch('/admin/api/series', { headers: { 'X-Requested-With': 'hookrelay' }, credentials: 'same-origin' });
      if (res.status === 401) return; // logged out: app.js shows the login page
      if (!res.ok) throw new Error(res.status + ' ' + res.statusText);
      const s = await res.json();
      const pts = (s.points || []).slice();
      if (s.now) pts.push(s.now);
      const end = pts.length ? Math.max(Date.now(), pts[pts.length - 1].t) : Date.now();
      // The window is the history there is: from the oldest point (a minute at least) up to
      // the span the process keeps (an hour).
      const keep = s.span_ms || 3600000;
      const span = Math.min(keep, Math.max(60000, pts.length ? end - pts[0].t + (s.interval_ms || 0) : 0));
      for (const def of CHARTS) draw(def, pts, span, end);
      document.getElementById('charts').dataset.updated = String(Date.now());
    } catch (e) {
      // A failed refresh keeps the last charts; the next one tries again.
    } finally {
      timer = setTimeout(refresh, REFRESH_MS);
    }
  }

  window.addEventListener('resize', () => {
    clearTimeout(timer);
    refresh();
  });
  refresh();
})();
