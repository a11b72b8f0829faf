// The Octopus console page. Registrant data (ids, endpoints, versions, zones,
// metadata) is only ever written with textContent: never as HTML.
'use strict';

const $ = (id) => document.getElementById(id);

// Builds an element; string children become text nodes.
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (k === 'class') node.className = v;
      else if (k === 'onclick') node.addEventListener('click', v);
      else node.setAttribute(k, v);
    }
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
  return node;
}

const state = {
  session: { writes: false, token_required: false, authorized: true, registry: '' },
  services: new Map(), // name -> summary (+ changedAt)
  selected: null,
  instances: new Map(), // key -> row (+ ttlDeadline)
  timeline: [],
  revision: 0,
  events: null,
};

// ---- time ----
function ago(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return s + ' s ago';
  if (s < 3600) return Math.floor(s / 60) + ' min ago';
  if (s < 86400) return Math.floor(s / 3600) + ' h ago';
  return Math.floor(s / 86400) + ' d ago';
}
function stamp(obj, msAgo) { obj.changedAt = performance.now() - msAgo; return obj; }
function withTtl(row) { row.ttlDeadline = row.ttl_ms === null || row.ttl_ms === undefined ? null : performance.now() + row.ttl_ms; return row; }

// ---- the URL keeps the filters and the open service ----
const FILTERS = ['q', 'state', 'version', 'zone'];
function readUrl() {
  const p = new URLSearchParams(location.search);
  for (const f of FILTERS) {
    const input = $('f-' + f), v = p.get(f) || '';
    if (input.tagName === 'SELECT') ensureOption(input, v);
    input.value = v;
  }
  state.selected = p.get('service') || null;
}
function writeUrl() {
  const p = new URLSearchParams();
  for (const f of FILTERS) { const v = $('f-' + f).value; if (v) p.set(f, v); }
  if (state.selected) p.set('service', state.selected);
  const q = p.toString();
  history.replaceState(null, '', q ? '?' + q : location.pathname);
}
function ensureOption(select, value) {
  if (value && ![...select.options].some((o) => o.value === value)) select.append(el('option', { value }, value));
}
function filterValues() {
  const f = {};
  for (const k of FILTERS) f[k] = $('f-' + k).value;
  f.q = f.q.trim().toLowerCase();
  return f;
}

// ---- API ----
async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) { init.headers['Content-Type'] = 'application/json'; init.body = JSON.stringify(body); }
  const res = await fetch(path, init);
  let data = null;
  try { data = await res.json(); } catch (_) { data = null; }
  if (!res.ok) throw new Error((data && data.error) || (res.status + ' ' + res.statusText));
  return data;
}
const enc = encodeURIComponent;

// A read answers at some revision; an event newer than it may have arrived
// meanwhile, and the read must not undo it: read again (a few times at most).
async function loadServices(tries = 3) {
  const data = await api('GET', '/api/services');
  if (data.revision < state.revision && tries > 1) return loadServices(tries - 1);
  state.services = new Map(data.services.map((s) => [s.name, stamp(s, s.changed_ms_ago)]));
  state.revision = Math.max(state.revision, data.revision);
  setLive(data.fresh, data.problem);
}
async function loadSelected(tries = 3) {
  if (!state.selected) return;
  const name = state.selected;
  const [detail, tl] = await Promise.all([
    api('GET', '/api/services/' + enc(name)),
    api('GET', '/api/services/' + enc(name) + '/timeline'),
  ]);
  if (state.selected !== name) return;
  if (Math.min(detail.revision, tl.revision) < state.revision && tries > 1) return loadSelected(tries - 1);
  state.instances = new Map(detail.instances.map((r) => [r.key, withTtl(r)]));
  state.timeline = tl.events.map((e) => stamp(e, e.seen_ms_ago));
}
// Lease times change without events: read them again, touching nothing else.
async function refreshTtls() {
  if (!state.selected) return;
  const name = state.selected;
  const detail = await api('GET', '/api/services/' + enc(name));
  if (state.selected !== name) return;
  for (const fresh of detail.instances) {
    const row = state.instances.get(fresh.key);
    if (row && row.mod_revision === fresh.mod_revision) { row.ttl_ms = fresh.ttl_ms; withTtl(row); }
  }
}
async function resync() {
  try {
    await loadServices();
    await loadSelected();
    $('problem').hidden = !state.problem;
  } catch (e) {
    showProblem('cannot load: ' + e.message);
  }
  render();
}

// ---- live updates ----
function setLive(fresh, problem) {
  const live = $('live');
  live.textContent = fresh ? 'live' : 'stale';
  live.className = 'badge ' + (fresh ? 'live' : 'stale');
  state.problem = fresh ? null : (problem || 'the registry is unreachable: showing the last known state');
  if (state.problem) showProblem(state.problem); else $('problem').hidden = true;
}
function showProblem(text) { const p = $('problem'); p.textContent = text; p.hidden = false; }

function applyUpdate(u) {
  state.revision = Math.max(state.revision, u.revision);
  // An event may trail a read that already holds it: never go back in revisions.
  for (const s of u.services) {
    const had = state.services.get(s.name);
    if (had && had.last_revision > u.revision) continue;
    if (s.summary) state.services.set(s.name, stamp(s.summary, s.summary.changed_ms_ago));
    else state.services.delete(s.name);
  }
  if (state.selected) {
    for (const i of u.instances) {
      if (i.service !== state.selected) continue;
      const had = state.instances.get(i.key);
      if (had && had.mod_revision > (i.row ? i.row.mod_revision : u.revision)) continue;
      if (i.row) state.instances.set(i.key, withTtl(i.row)); else state.instances.delete(i.key);
    }
    const known = new Set(state.timeline.map((e) => e.revision + '/' + e.id));
    const fresh = u.timeline.filter((e) => e.service === state.selected && !known.has(e.revision + '/' + e.id)).map((e) => stamp(e, 0));
    state.timeline = fresh.reverse().concat(state.timeline).slice(0, 200);
  }
  scheduleRender();
}

function connect() {
  if (state.events) state.events.close();
  const es = new EventSource('/api/events');
  state.events = es;
  // Every (re)connection starts with `hello`: whatever was missed is read again.
  es.addEventListener('hello', (e) => { const h = JSON.parse(e.data); setLive(h.fresh, h.problem); resync(); });
  es.addEventListener('update', (e) => applyUpdate(JSON.parse(e.data)));
  es.addEventListener('reset', () => resync());
  es.addEventListener('status', (e) => { const s = JSON.parse(e.data); setLive(s.fresh, s.problem); });
  es.onerror = () => {
    const live = $('live');
    live.textContent = 'reconnecting…';
    live.className = 'badge stale';
    // The browser retries by itself unless the server refused; then, so do we.
    if (es.readyState === EventSource.CLOSED) setTimeout(start, 2000);
  };
}

// ---- rendering ----
let renderPending = false;
function scheduleRender() {
  if (renderPending) return;
  renderPending = true;
  requestAnimationFrame(() => { renderPending = false; render(); });
}

function rowMatches(r, f) {
  if (f.state && r.state !== f.state) return false;
  if (f.version && r.version !== f.version) return false;
  if (f.zone && r.zone !== f.zone) return false;
  if (!f.q) return true;
  const hay = [r.id, r.endpoint, r.version, r.zone, ...r.metadata.map(([k, v]) => k + '=' + v)].join('\n').toLowerCase();
  return hay.includes(f.q);
}
function serviceMatches(s, f) {
  if (f.state === 'serving' && s.serving === 0) return false;
  if (f.state === 'draining' && s.draining === 0) return false;
  if (f.version && !s.versions.includes(f.version)) return false;
  if (f.zone && !s.zones.includes(f.zone)) return false;
  return !f.q || s.name.toLowerCase().includes(f.q) || s.name === state.selected;
}

function renderFilters() {
  const versions = new Set(), zones = new Set();
  for (const s of state.services.values()) { s.versions.forEach((v) => versions.add(v)); s.zones.forEach((z) => zones.add(z)); }
  for (const [id, values] of [['f-version', versions], ['f-zone', zones]]) {
    const select = $(id);
    [...values].sort().forEach((v) => ensureOption(select, v));
  }
}

function renderServices(f) {
  const body = $('services').tBodies[0];
  const names = [...state.services.keys()].sort();
  const rows = [];
  for (const name of names) {
    const s = state.services.get(name);
    if (!serviceMatches(s, f)) continue;
    const tr = el('tr', { 'data-service': name, class: name === state.selected ? 'selected' : '' },
      el('td', null, name),
      el('td', { class: 'num' }, s.instances),
      el('td', { class: 'num' }, s.serving),
      el('td', { class: 'num' + (s.draining ? ' state-draining' : '') }, s.draining),
      el('td', null, s.versions.join(', ')),
      el('td', null, s.zones.join(', ')),
      el('td', { class: 'ago', title: 'revision ' + s.last_revision }, ago(performance.now() - s.changedAt)));
    tr.addEventListener('click', () => select(name));
    rows.push(tr);
  }
  body.replaceChildren(...rows);
  $('service-count').textContent = rows.length + ' of ' + names.length;
}

function ttlText(r) {
  if (r.ttlDeadline === null) return r.lease === '0' ? 'no lease' : '…';
  return Math.max(0, Math.round((r.ttlDeadline - performance.now()) / 1000)) + ' s';
}

function renderDetail(f) {
  const detail = $('detail');
  if (!state.selected) { detail.hidden = true; return; }
  detail.hidden = false;
  const s = state.services.get(state.selected);
  $('detail-title').textContent = state.selected + (s ? ' (' + s.serving + ' serving, ' + s.draining + ' draining)' : ' (no instances)');
  const rows = [...state.instances.values()].filter((r) => rowMatches(r, f)).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  $('instances').tBodies[0].replaceChildren(...rows.map((r) => el('tr', { 'data-id': r.id },
    el('td', null, r.id),
    el('td', null, r.endpoint),
    el('td', { class: 'state state-' + r.state }, r.state),
    el('td', null, r.version),
    el('td', null, r.zone),
    el('td', { class: 'num' }, r.weight),
    el('td', { class: 'meta' }, ...r.metadata.map(([k, v]) => el('span', { class: 'kv' }, k + '=' + v)), r.error ? el('span', { class: 'error' }, r.error) : null),
    el('td', { class: 'num ttl' }, ttlText(r)),
    el('td', { class: 'num' }, r.create_revision),
    el('td', { class: 'num' }, r.mod_revision),
    el('td', null, ...actions(r)))));
  $('timeline').replaceChildren(...state.timeline.map((e) => el('li', { 'data-revision': e.revision, 'data-kind': e.kind },
    el('span', { class: 'muted' }, 'rev ' + e.revision + ' · '),
    el('span', { class: 'kind kind-' + e.kind }, e.kind),
    el('span', null, e.id),
    el('span', { class: 'muted ago', 'data-at': '' }, ' · ' + ago(performance.now() - e.changedAt)),
    ...e.diff.map((d) => el('span', { class: 'diff' }, d.field + ': ' + (d.before === null ? '∅' : d.before) + ' → ' + (d.after === null ? '∅' : d.after))))));
}

function render() {
  const f = filterValues();
  $('revision').textContent = 'revision ' + state.revision;
  renderFilters();
  renderServices(f);
  renderDetail(f);
}

function select(name) {
  state.selected = name;
  state.instances = new Map();
  state.timeline = [];
  writeUrl();
  render();
  loadSelected().then(render, (e) => showProblem(e.message));
}

// ---- actions ----
function cli(verb, r) {
  const reg = state.session.registry ? ' --registry ' + state.session.registry : '';
  return 'octopus ' + verb + ' ' + state.selected + '/' + r.id + reg;
}
function warnings(verb, r) {
  const out = [];
  const others = [...state.instances.values()].filter((o) => o.key !== r.key && o.state === 'serving');
  if (verb !== 'undrain' && r.state === 'serving') {
    if (others.length === 0) out.push('This leaves ' + state.selected + ' with no serving instance.');
    else if (r.zone && !others.some((o) => o.zone === r.zone)) out.push('This leaves zone ' + r.zone + ' of ' + state.selected + ' with no serving instance.');
  }
  if (verb === 'deregister') out.push('A live process registers again: stop it first to remove it for good. This removes the key of a process that is gone, before its lease runs out.');
  return out;
}
function actions(r) {
  const verbs = r.state === 'draining' ? ['undrain', 'deregister'] : r.state === 'serving' ? ['drain', 'deregister'] : ['deregister'];
  return verbs.map((verb) => {
    const b = el('button', { type: 'button', 'data-action': verb }, verb);
    if (!state.session.writes) { b.disabled = true; b.title = 'read-only console (start it with --writes)'; }
    b.addEventListener('click', () => openConfirm(verb, r));
    return b;
  });
}
let pending = null;
function openConfirm(verb, r) {
  pending = { verb, id: r.id, service: state.selected };
  $('confirm-title').textContent = verb + ' ' + state.selected + '/' + r.id + '?';
  $('confirm-warnings').replaceChildren(...warnings(verb, r).map((w) => el('li', null, w)));
  $('confirm-cli').value = cli(verb, r);
  $('confirm-error').textContent = '';
  $('confirm').showModal();
}
async function runPending() {
  if (!pending) return;
  const { verb, id, service } = pending;
  const base = '/api/services/' + enc(service) + '/instances/' + enc(id);
  try {
    if (verb === 'deregister') await api('DELETE', base, {});
    else await api('POST', base + '/' + verb, {});
    $('confirm').close();
  } catch (e) {
    $('confirm-error').textContent = e.message;
  }
}
async function copyCli() {
  const input = $('confirm-cli');
  input.select();
  try { await navigator.clipboard.writeText(input.value); $('confirm-copy').textContent = 'Copied'; } catch (_) { $('confirm-copy').textContent = 'Selected: press Ctrl-C'; }
  setTimeout(() => { $('confirm-copy').textContent = 'Copy as CLI'; }, 1500);
}

// ---- session ----
async function start() {
  try {
    state.session = await api('GET', '/api/session');
  } catch (e) {
    showProblem('cannot reach the console: ' + e.message);
    setTimeout(start, 2000);
    return;
  }
  $('registry').textContent = state.session.registry;
  const mode = $('mode');
  mode.textContent = state.session.writes ? 'writes on' : 'read-only';
  mode.className = 'badge' + (state.session.writes ? ' writes' : '');
  $('login').hidden = !(state.session.token_required && !state.session.authorized);
  if (!$('login').hidden) return;
  connect();
}
async function login(ev) {
  ev.preventDefault();
  try {
    await api('POST', '/api/session', { token: $('token').value });
    $('token').value = '';
    $('login-error').textContent = '';
    start();
  } catch (e) {
    $('login-error').textContent = e.message;
  }
}

document.addEventListener('DOMContentLoaded', () => {
  readUrl();
  for (const f of FILTERS) {
    const input = $('f-' + f);
    input.addEventListener('input', () => { writeUrl(); render(); });
  }
  $('login').addEventListener('submit', login);
  $('confirm-ok').addEventListener('click', runPending);
  $('confirm-copy').addEventListener('click', copyCli);
  // Ages and lease times tick; the open service's lease times are read again.
  setInterval(() => {
    for (const node of document.querySelectorAll('#services .ago')) {
      const s = state.services.get(node.parentElement.getAttribute('data-service'));
      if (s) node.textContent = ago(performance.now() - s.changedAt);
    }
    const byId = new Map([...state.instances.values()].map((x) => [x.id, x]));
    for (const node of document.querySelectorAll('#instances tr')) {
      const r = byId.get(node.getAttribute('data-id'));
      const cell = node.querySelector('.ttl');
      if (r && cell) cell.textContent = ttlText(r);
    }
  }, 1000);
  setInterval(() => { if (state.selected && state.events && state.events.readyState === EventSource.OPEN) refreshTtls().then(scheduleRender, () => {}); }, 3000);
  start();
});
