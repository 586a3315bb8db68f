// hookrelay admin UI: plain script, no build step. Every value from a webhook goes into the
// page as text (textContent), never as HTML.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const STATES = {
    relay: ['accepted', 'sent', 'acked', 'delivered', 'dead'],
    agent: ['queued', 'delivering', 'retrying', 'delivered', 'filtered', 'dead'],
  };
  const WAITING = ['accepted', 'sent', 'queued', 'retrying', 'delivering'];
  const MAX_ROWS = 500;
  const HEX_MAX = 64 * 1024;
  const ui = { side: 'relay', selected: null, filter: { endpoint: '', state: '' }, es: null };

  // el builds an element; props: class, text, title, data-*, on<event>, or a DOM property.
  function el(tag, props, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k.startsWith('data-')) e.setAttribute(k, v);
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e[k] = v;
    }
    for (const c of kids) if (c != null) e.append(c);
    return e;
  }

  async function api(path, opts = {}) {
    const headers = Object.assign({ 'X-Requested-With': 'hookrelay' }, opts.headers || {});
    const res = await fetch(path, Object.assign({}, opts, { headers, credentials: 'same-origin' }));
    if (res.status === 401) {
      location.reload(); // the session ended: the page shows the login form
      throw new Error('logged out');
    }
    if (res.status === 204) return null;
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(body.error || res.status + ' ' + res.statusText);
    return body;
  }

  let toastTimer;
  function toast(msg, bad) {
    const t = $('toast');
    t.textContent = msg;
    t.classList.toggle('error', !!bad);
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, 4000);
  }

  const timeMs = (s) => { const n = Date.parse(s); return isNaN(n) ? 0 : n; };
  function fmtTime(s) {
    if (!s) return '';
    const d = new Date(s);
    return isNaN(d) ? s : d.toLocaleString();
  }
  function fmtBytes(n) {
    if (n < 1024) return n + ' B';
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + ' KiB';
    return (n / 1024 / 1024).toFixed(1) + ' MiB';
  }
  const stateBadge = (s) => el('span', { class: 'state ' + s, text: s });
  const q = (params) => {
    const u = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v) u.set(k, v);
    const s = u.toString();
    return s ? '?' + s : '';
  };

  // ---- webhook list ----

  function matches(s) {
    const f = ui.filter;
    return (!f.endpoint || s.endpoint === f.endpoint) && (!f.state || s.state === f.state);
  }

  // groupBadges shows each consumer group's state (relay), when the webhook has more than
  // one group or a group other than default.
  function groupBadges(groups) {
    const names = Object.keys(groups || {}).sort();
    if (names.length === 0 || (names.length === 1 && names[0] === 'default')) return [];
    return names.map((g) => el('span', { class: 'group', title: 'consumer group ' + g },
      ' ' + g + ': ', stateBadge(groups[g])));
  }

  function rowFor(s) {
    const tr = el('tr', { 'data-id': s.id, onclick: () => select(s.id) },
      el('td', { class: 'id', text: s.id }),
      el('td', { text: s.endpoint }),
      el('td', null, stateBadge(s.state), routeBadges(s.routes), ...groupBadges(s.groups)),
      el('td', { text: fmtTime(s.received_at), title: s.received_at }),
      el('td', { class: 'num', text: String(s.attempts) }));
    tr.dataset.t = String(timeMs(s.received_at));
    if (s.id === ui.selected) tr.classList.add('selected');
    return tr;
  }

  // routeBadges shows each route's state (agent, when a webhook has several routes).
  function routeBadges(routes) {
    const names = Object.keys(routes || {}).sort();
    if (names.length < 2) return '';
    return el('span', { class: 'routes' }, ...names.map((n) => {
      const b = stateBadge(routes[n].state);
      b.textContent = n + ': ' + routes[n].state;
      return b;
    }));
  }

  // newer reports whether summary s sorts before row r (newest first).
  function newer(s, r) {
    const a = timeMs(s.received_at), b = Number(r.dataset.t);
    return a > b || (a === b && s.id > r.dataset.id);
  }

  function findRow(tbody, id) {
    return tbody.querySelector('tr[data-id="' + CSS.escape(id) + '"]');
  }

  function upsert(s, fresh) {
    const tbody = $('webhooks');
    const old = findRow(tbody, s.id);
    if (!matches(s)) {
      if (old) old.remove();
    } else if (old) {
      old.replaceWith(rowFor(s));
    } else {
      const tr = rowFor(s);
      const before = Array.from(tbody.rows).find((r) => newer(s, r)) || null;
      tbody.insertBefore(tr, before);
      if (fresh) tr.classList.add('fresh');
      while (tbody.rows.length > MAX_ROWS) tbody.deleteRow(-1);
    }
    $('webhooks-empty').hidden = tbody.rows.length > 0;
  }

  async function loadWebhooks() {
    const res = await api('/admin/api/webhooks' + q(ui.filter));
    $('webhooks').replaceChildren(...res.webhooks.map(rowFor));
    $('webhooks-empty').hidden = res.webhooks.length > 0;
  }

  // ---- detail ----

  async function select(id) {
    if (ui.selected !== id) $('replay-status').hidden = true;
    ui.selected = id;
    for (const r of document.querySelectorAll('tr.selected')) r.classList.remove('selected');
    for (const r of document.querySelectorAll('tr[data-id="' + CSS.escape(id) + '"]')) {
      r.classList.add('selected');
    }
    try {
      renderDetail(await api('/admin/api/webhooks/' + encodeURIComponent(id)));
    } catch (e) {
      toast(e.message, true);
    }
  }

  function renderDetail(d) {
    if (d.id !== ui.selected) return; // another row was clicked meanwhile
    $('detail').hidden = false;
    $('d-id').textContent = d.id;
    $('d-endpoint').textContent = d.endpoint;
    $('d-state').replaceChildren(stateBadge(d.state), d.replay ? ' (replay)' : '', ...groupBadges(d.groups));
    // only a finished or acked webhook can be replayed (in some group); a waiting one goes out anyway
    $('replay').disabled = Object.values(d.groups || { _: d.state }).every((st) => WAITING.includes(st));
    $('replay').title = $('replay').disabled ? 'already waiting to be delivered' : 'deliver it again';
    $('d-request').textContent = d.method + ' ' + (d.path || '/') + (d.query ? '?' + d.query : '');
    $('d-received').textContent = fmtTime(d.received_at);
    $('d-received').title = d.received_at;
    $('d-attempts').textContent = String(d.attempts);
    $('d-dead').textContent = d.dead_reason || '';
    $('d-dead').hidden = $('d-dead-label').hidden = !d.dead_reason;
    renderRoutes(d);
    $('headers').replaceChildren(...d.headers.map(([n, v]) =>
      el('tr', null, el('td', { text: n }), el('td', { text: v }))));
    renderBody(d.body_base64);
    $('attempts').replaceChildren(...d.deliveries.map((a) => el('tr', null,
      el('td', { text: fmtTime(a.at), title: a.at }),
      el('td', { text: a.status ? String(a.status) : '—' }),
      el('td', { class: 'num', text: String(a.ms) }),
      el('td', { class: a.error ? 'error' : '', text: a.error || 'ok' }))));
    if (d.deliveries.length === 0) {
      $('attempts').append(el('tr', null, el('td', { class: 'muted', colSpan: 4, text: 'none yet' })));
    }
    renderResponse(d.deliveries);
  }

  // renderResponse shows the newest attempt's recorded response of the target, if any.
  function renderResponse(deliveries) {
    const a = [...deliveries].reverse().find((x) => x.response_headers || x.response_body_base64);
    $('response').hidden = !a;
    if (!a) return;
    $('response-headers').replaceChildren(...(a.response_headers || []).map(([n, v]) =>
      el('tr', null, el('td', { text: n }), el('td', { text: v }))));
    renderBody(a.response_body_base64, 'response-info', 'response-body');
    $('response-info').textContent = 'status ' + (a.status || '—') + ' · ' + $('response-info').textContent;
  }

  // renderRoutes lists each route's copy (agent): its state, attempts, why it is dead or
  // filtered, and a replay to that route alone.
  function renderRoutes(d) {
    const names = Object.keys(d.routes || {}).sort();
    $('d-routes').hidden = $('d-routes-label').hidden = names.length === 0;
    $('d-routes').replaceChildren(...names.map((n) => {
      const r = d.routes[n];
      const again = el('button', { text: 'Replay', title: 'deliver it again through route ' + n });
      again.disabled = WAITING.includes(r.state);
      again.addEventListener('click', () => replay(n));
      return el('div', { class: 'route' }, el('b', { text: n + ' ' }), stateBadge(r.state),
        ' ' + r.attempts + ' attempt' + (r.attempts === 1 ? '' : 's') + (r.reason ? ' · ' + r.reason : '') + ' ',
        again);
    }));
  }

  // renderBody shows JSON pretty-printed, other UTF-8 as text, anything else as a hex dump.
  function renderBody(b64, infoId = 'body-info', bodyId = 'body') {
    const bin = atob(b64 || '');
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    const info = $(infoId), body = $(bodyId);
    info.textContent = fmtBytes(bytes.length);
    body.classList.remove('hex');
    if (bytes.length === 0) {
      body.textContent = '(empty)';
      return;
    }
    let text = null;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch (e) { /* not UTF-8 */ }
    if (text !== null) {
      try {
        body.textContent = JSON.stringify(JSON.parse(text), null, 2);
        info.textContent += ' · JSON';
        return;
      } catch (e) { /* plain text */ }
      body.textContent = text;
      info.textContent += ' · text';
      return;
    }
    info.textContent += ' · binary';
    body.classList.add('hex');
    body.textContent = hexDump(bytes.subarray(0, HEX_MAX)) +
      (bytes.length > HEX_MAX ? '\n… ' + fmtBytes(bytes.length - HEX_MAX) + ' more' : '');
  }

  function hexDump(bytes) {
    const lines = [];
    for (let off = 0; off < bytes.length; off += 16) {
      const chunk = bytes.subarray(off, off + 16);
      const hex = Array.from(chunk, (b) => b.toString(16).padStart(2, '0')).join(' ');
      const ascii = Array.from(chunk, (b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : '.')).join('');
      lines.push(off.toString(16).padStart(8, '0') + '  ' + hex.padEnd(48) + ' ' + ascii);
    }
    return lines.join('\n');
  }

  // replay replays the selected webhook: through route (agent) alone, or every finished copy.
  async function replay(route) {
    const id = ui.selected;
    if (!id) return;
    const st = $('replay-status');
    const only = typeof route === 'string' ? route : '';
    try {
      await api('/admin/api/webhooks/' + encodeURIComponent(id) + '/replay' + q({ route: only }), { method: 'POST' });
      st.textContent = 'Replay queued: ' + id + ' will be delivered again' + (only ? ' through route ' + only : '') + '.';
      st.className = 'ok';
      st.hidden = false;
      await select(id);
    } catch (e) {
      st.textContent = 'Replay failed: ' + e.message;
      st.className = 'error';
      st.hidden = false;
    }
  }

  // ---- dead letters ----

  async function loadDead() {
    const endpoint = $('dead-endpoint').value.trim();
    const res = await api('/admin/api/dead' + q({ endpoint }));
    $('dead').replaceChildren(...res.webhooks.map((s) => {
      const del = el('button', { class: 'danger', text: 'Delete' });
      del.addEventListener('click', async (ev) => {
        ev.stopPropagation();
        if (del.dataset.armed !== '1') { // a second click confirms
          del.dataset.armed = '1';
          del.textContent = 'Sure?';
          return;
        }
        try {
          await api('/admin/api/dead/' + encodeURIComponent(s.id), { method: 'DELETE' });
          toast('Deleted ' + s.id);
          await loadDead();
        } catch (e) { toast(e.message, true); }
      });
      const rep = el('button', { text: 'Replay' });
      rep.addEventListener('click', async (ev) => {
        ev.stopPropagation();
        try {
          await api('/admin/api/webhooks/' + encodeURIComponent(s.id) + '/replay', { method: 'POST' });
          toast('Replay queued: ' + s.id);
          await loadDead();
        } catch (e) { toast(e.message, true); }
      });
      return el('tr', { 'data-id': s.id, onclick: () => select(s.id) },
        el('td', { class: 'id', text: s.id }),
        el('td', { text: s.endpoint }),
        el('td', { text: fmtTime(s.received_at), title: s.received_at }),
        el('td', { class: 'num', text: String(s.attempts) }),
        el('td', null, rep, ' ', del));
    }));
    $('dead-empty').hidden = res.webhooks.length > 0;
  }

  async function replayAllDead() {
    const endpoint = $('dead-endpoint').value.trim();
    try {
      const res = await api('/admin/api/dead/replay' + q({ endpoint }), { method: 'POST' });
      toast(res.count + ' dead letter' + (res.count === 1 ? '' : 's') + ' replayed');
      await loadDead();
    } catch (e) { toast(e.message, true); }
  }

  // ---- queues, status, agents ----

  function renderStats(p) {
    $('queues').replaceChildren(...(p.queues || []).map((s) => el('tr', { 'data-queue': s.queue },
      el('td', { text: s.queue }),
      el('td', { class: 'num', text: String(s.pending) }),
      el('td', { class: 'num', text: fmtBytes(s.bytes) }),
      el('td', { class: 'num', text: String(s.dead) }))));
    if (!(p.queues || []).length) {
      $('queues').append(el('tr', null, el('td', { class: 'muted', colSpan: 4, text: 'no queues yet' })));
    }
    const extra = $('status-extra');
    extra.replaceChildren();
    if (p.status && typeof p.status === 'object') {
      for (const [k, v] of Object.entries(p.status)) {
        if (v === null || v === '') continue;
        if (Array.isArray(v) && v.every((r) => r && r.endpoint && r.target)) {
          // the agent's routes: one line each
          extra.append(el('div', null, k + ':'));
          for (const r of v) {
            extra.append(el('div', { class: 'mono route' }, r.endpoint + ' → ' + r.target +
              ' · queued ' + r.queued + ' · dead ' + r.dead));
          }
          continue;
        }
        extra.append(el('div', null, k + ': ', el('span', { class: 'mono', text: typeof v === 'object' ? JSON.stringify(v) : String(v) })));
      }
    }
    if (p.agents) renderAgents(p.agents);
  }

  function renderAgents(list) {
    $('agents').replaceChildren(...list.map((a) => el('tr', { 'data-agent': a.agent_id },
      el('td', { class: 'id', text: a.agent_id }),
      el('td', { text: (a.endpoints || []).join(', ') +
        (a.group && a.group !== 'default' ? ' (group ' + a.group + ')' : '') }),
      el('td', { text: a.transport }),
      el('td', { text: fmtTime(a.connected_at), title: a.connected_at }),
      el('td', { class: 'num', text: String(a.in_flight) }))));
    $('agents-empty').hidden = list.length > 0;
    $('tab-agents').textContent = 'Agents (' + list.length + ')';
  }

  // ---- live updates ----

  function connect() {
    const es = new EventSource('/admin/api/events');
    ui.es = es;
    es.onopen = () => $('live').classList.add('on');
    es.onerror = () => {
      $('live').classList.remove('on');
      if (es.readyState === EventSource.CLOSED) { // refused (e.g. 401): check, then retry
        setTimeout(() => api('/admin/api/status').then(connect, () => {}), 3000);
      }
    };
    es.addEventListener('webhook', (ev) => {
      const s = JSON.parse(ev.data);
      upsert(s, true);
      if (s.id === ui.selected) select(s.id);
      if (!$('dead-tab').hidden && s.state === 'dead') loadDead().catch(() => {});
    });
    es.addEventListener('removed', (ev) => {
      const { id } = JSON.parse(ev.data);
      const r = findRow($('webhooks'), id);
      if (r) r.remove();
      if (id === ui.selected) $('detail').hidden = true;
    });
    es.addEventListener('stats', (ev) => renderStats(JSON.parse(ev.data)));
  }

  // ---- wiring ----

  function showTab(id) {
    for (const b of document.querySelectorAll('.tab')) b.classList.toggle('active', b.dataset.tab === id);
    for (const p of document.querySelectorAll('.panel')) p.hidden = p.id !== id;
    if (id === 'dead-tab') loadDead().catch((e) => toast(e.message, true));
  }

  async function init() {
    for (const b of document.querySelectorAll('.tab')) b.addEventListener('click', () => showTab(b.dataset.tab));
    $('filters').addEventListener('submit', (ev) => {
      ev.preventDefault();
      ui.filter = { endpoint: $('filter-endpoint').value.trim(), state: $('filter-state').value };
      loadWebhooks().catch((e) => toast(e.message, true));
    });
    $('dead-filters').addEventListener('submit', (ev) => {
      ev.preventDefault();
      loadDead().catch((e) => toast(e.message, true));
    });
    $('dead-replay-all').addEventListener('click', replayAllDead);
    $('replay').addEventListener('click', replay);
    $('logout').addEventListener('click', async () => {
      await fetch('/admin/logout', { method: 'POST', headers: { 'X-Requested-With': 'hookrelay' } });
      location.href = '/admin/';
    });

    const st = await api('/admin/api/status');
    ui.side = st.side === 'agent' ? 'agent' : 'relay';
    $('side').textContent = ui.side + ' admin';
    document.title = 'hookrelay ' + ui.side + ' admin';
    $('filter-state').append(...STATES[ui.side].map((s) => el('option', { value: s, text: s })));
    $('tab-agents').hidden = ui.side !== 'relay';
    $('logout').hidden = !st.auth;
    renderStats(st);
    if (ui.side === 'relay') renderAgents((await api('/admin/api/agents')).agents);
    await loadWebhooks();
    connect();
  }

  init().catch((e) => toast(e.message, true));
})();
