"""The read-only web view: two small pages that poll the admin JSON API every second.

No build step: the pages are strings here, the script is plain JavaScript
that builds the tables with ``textContent`` (never ``innerHTML`` with data).
"""

from __future__ import annotations

import html
import json

STYLE = """
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } .down { color: #b00; font-weight: bold; }
pre { background: #f7f7f7; padding: .7em; max-width: 70em; overflow: auto; }
#status { color: #666; font-size: .9em; }
"""

COMMON_JS = """
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function table(id, heads, rows) {
  const t = el('table'); t.id = id;
  const hr = el('tr'); heads.forEach(h => hr.appendChild(el('th', h))); t.appendChild(hr);
  rows.forEach(r => {
    const tr = el('tr');
    r.forEach(c => tr.appendChild(c instanceof Node ? c : el('td', c)));
    t.appendChild(tr);
  });
  return t;
}
function td(node) { const c = el('td'); c.appendChild(node); return c; }
function link(href, text) { const a = el('a', text); a.href = href; return a; }
function put(id, node) { const old = document.getElementById(id); old.replaceWith(node); }
function ago(t) { return t ? Math.max(0, Math.round(Date.now() / 1000 - t)) + ' s ago' : '-'; }
async function poll(url, render) {
  try {
    const r = await fetch(url, {credentials: 'same-origin'});
    const data = await r.json();
    if (!r.ok) throw new Error(r.status + ': ' + (data.error || ''));
    render(data);
    document.getElementById('status').textContent = 'updated ' + new Date().toLocaleTimeString();
  } catch (e) {
    document.getElementById('status').textContent = 'update failed: ' + e.message;
  }
}
"""

OVERVIEW_JS = """
function render(d) {
  const s = d.shards;
  const dir = s.director;
  const rows = [['director', dir.pid, '-', '-', '-', '-', '-',
                 Math.round(dir.memory_kb / 1024) + ' MB', 'restarts ' + dir.restarts]];
  s.shards.forEach(r => rows.push(r.up ? [
      'shard ' + r.index, r.pid, r.entities.hunt, r.entities.player, r.in_flight, r.msgs_per_s,
      r.batches ? (r.messages / r.batches).toFixed(1) + ' (max ' + r.largest_batch + ')' : '-',
      Math.round(r.memory_kb / 1024) + ' MB', 'up ' + r.uptime_s + ' s'
    ] : ['shard ' + r.index, r.pid, '-', '-', r.in_flight, '-', '-', '-',
         el('td', r.error, 'down')]));
  put('shards', table('shards', ['actor', 'pid', 'hunts', 'players', 'in flight', 'msgs/s',
                                 'batch avg', 'memory', 'state'], rows));
  const g = s.gateway;
  document.getElementById('gateway').textContent =
    `gateway ${g.id}: ${g.connections} connections, ${g.players_online} players online`;
  const hunts = d.hunts.map(h => [
    td(link('/entity/' + encodeURIComponent(h.id), h.id)), h.name, h.status, h.players,
    h.leaderboard.map(p => p.name + ' ' + p.score).join(', ') || '-', h.messages, ago(h.last_active)
  ]);
  put('hunts', table('hunts', ['hunt', 'name', 'status', 'players', 'leaderboard', 'messages',
                               'last activity'], hunts));
}
render(INITIAL);
setInterval(() => poll('/api/overview', render), 1000);
"""

ENTITY_JS = """
function renderEntity(d) {
  const facts = [['kind', d.kind], ['shard', d.shard], ['seq', d.version],
                 ['snapshot seq', d.snapshot_seq], ['messages', d.messages],
                 ['last activity', ago(d.last_active)],
                 ['mailbox depth', d.mailbox ? d.mailbox.depth : '-'],
                 ['active', d.active ? 'yes' : 'no (passivated)']];
  if (d.subscribers) facts.push(['subscribed gateways', d.subscribers.join(', ') || '-']);
  put('facts', table('facts', ['', ''], facts));
  const st = el('pre', JSON.stringify(d.state, null, 2)); st.id = 'state';
  put('state', st);
}
function renderEvents(d) {
  put('events', table('events', ['seq', 'type', 'at', 'data', 'metadata'], d.events.map(e => [
    e.seq, e.type, new Date(e.at).toISOString(), JSON.stringify(e.data), JSON.stringify(e.metadata)
  ])));
}
function tick() {
  poll('/api/entity/' + encodeURIComponent(ID) + '?activate=0', renderEntity);
  poll('/api/events/' + encodeURIComponent(ID) + '?limit=1000', renderEvents);
}
tick();
setInterval(tick, 1000);
"""


def _page(title: str, body: str, script: str) -> str:
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{STYLE}</style></head>
<body>{body}
<script>{COMMON_JS}{script}</script>
</body></html>
"""


def _script_json(data: object) -> str:
    return json.dumps(data, default=str).replace("</", "<\\/")


def overview_page(initial: object) -> str:
    body = """<h1>Treasure hunt server</h1><p id="status">loading…</p>
<p id="gateway"></p>
<h2>Actors</h2><table id="shards"></table>
<h2>Active hunts</h2><table id="hunts"></table>"""
    return _page("Treasure admin", body, f"const INITIAL = {_script_json(initial)};\n{OVERVIEW_JS}")


def entity_page(entity_id: str) -> str:
    safe = html.escape(entity_id)
    body = f"""<p><a href="/">&larr; overview</a></p><h1>{safe}</h1><p id="status">loading…</p>
<table id="facts"></table><h2>State as the actor holds it</h2><pre id="state"></pre>
<h2>Stored events</h2><table id="events"></table>"""
    return _page(
        f"Treasure admin: {entity_id}", body, f"const ID = {_script_json(entity_id)};\n{ENTITY_JS}"
    )


def refused_page(message: str) -> str:
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>401</title></head>
<body><h1>401: {html.escape(message)}</h1>
<p>Open this page with <code>?token=ADMIN_TOKEN</code> once, or send
<code>Authorization: Bearer ADMIN_TOKEN</code>.</p></body></html>
"""
