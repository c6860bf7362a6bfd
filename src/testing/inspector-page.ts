/**
 * The inspector's page: static HTML, CSS and a small script that follows `GET /events`.
 *
 * Everything the page shows comes from visitors (URLs, user agents, event data). The script
 * builds the DOM with createElement and textContent only, so no string it receives is ever parsed
 * as HTML; the Content-Security-Policy (set by the server, with `nonce`) only runs this script.
 * The script avoids template literals, so that this file can hold it in one.
 */

const STYLE = `
:root {
  color-scheme: light dark;
  --bg: #f6f7f9; --panel: #fff; --text: #1d2330; --muted: #667085; --line: #e3e6eb;
  --pageview: #1a7f4b; --event: #7a3db8; --warn: #b54708; --code: #eef1f5;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #14171c; --panel: #1c2027; --text: #e6e8eb; --muted: #98a2b3; --line: #2c323c;
    --pageview: #4cc38a; --event: #c49cf0; --warn: #f79009; --code: #252a33;
  }
}
* { box-sizing: border-box; }
body {
  margin: 0; background: var(--bg); color: var(--text);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
}
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
header { padding: 14px 24px; background: var(--panel); border-bottom: 1px solid var(--line); }
header h1 { display: inline; font-size: 18px; margin: 0 12px 0 0; }
header p { margin: 6px 0 0; color: var(--muted); }
header code { background: var(--code); padding: 1px 5px; border-radius: 4px; color: var(--text); }
.status { font-size: 12px; padding: 2px 8px; border-radius: 999px; background: var(--code); color: var(--muted); }
.status::before { content: "\\25CF\\00a0"; }
.status[data-state="live"] { color: var(--pageview); }
.status[data-state="reconnecting"], .status[data-state="closed"] { color: var(--warn); }
main { display: grid; grid-template-columns: minmax(0, 1fr) 380px; gap: 20px; padding: 20px 24px; }
@media (max-width: 900px) { main { grid-template-columns: minmax(0, 1fr); } }
h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .05em; color: var(--muted); margin: 0 0 10px; }
h2 small { text-transform: none; letter-spacing: 0; font-weight: normal; }
aside section, .feed { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; }
aside { display: flex; flex-direction: column; gap: 16px; min-width: 0; }
#empty { color: var(--muted); margin: 8px 0; }
#events { list-style: none; margin: 0; padding: 0; }
.event { border-top: 1px solid var(--line); padding: 10px 0; animation: arrive 1.2s ease-out; }
.event:first-child { border-top: 0; }
@keyframes arrive { from { background: var(--code); } to { background: transparent; } }
.event-head { display: flex; align-items: baseline; gap: 8px; }
.badge { font-size: 11px; font-weight: 600; padding: 1px 7px; border-radius: 4px; color: #fff; background: var(--pageview); }
.event[data-type="event"] .badge { background: var(--event); }
.event-title { font-weight: 600; overflow-wrap: anywhere; }
.event-head time { margin-left: auto; color: var(--muted); font-size: 12px; white-space: nowrap; }
.fields { display: grid; grid-template-columns: 90px minmax(0, 1fr); gap: 2px 10px; margin: 6px 0 0; }
.fields dt { color: var(--muted); }
.fields dd { margin: 0; overflow-wrap: anywhere; }
pre { margin: 6px 0 0; padding: 8px 10px; background: var(--code); border-radius: 6px; overflow: auto; max-height: 240px; white-space: pre-wrap; overflow-wrap: anywhere; }
details { margin-top: 4px; color: var(--muted); }
details summary { cursor: pointer; font-size: 12px; }
table { width: 100%; border-collapse: collapse; }
th, td { text-align: left; padding: 3px 0; border-top: 1px solid var(--line); vertical-align: top; }
thead th { border-top: 0; color: var(--muted); font-weight: normal; font-size: 12px; }
td.key { overflow-wrap: anywhere; padding-right: 10px; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.none { color: var(--muted); }
.scroll { max-height: 280px; overflow: auto; }
.totals { display: grid; grid-template-columns: repeat(4, 1fr); gap: 8px; margin: 0; }
.totals div { text-align: center; display: flex; flex-direction: column-reverse; }
.totals dd { margin: 0; font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; }
.totals dt { color: var(--muted); font-size: 12px; }
.tracker + .tracker { margin-top: 14px; }
.tracker h3 { font-size: 14px; margin: 0 0 4px; overflow-wrap: anywhere; }
.reasons { color: var(--warn); font-size: 12px; }
.hint { color: var(--muted); margin: 0; }
.refused li { overflow-wrap: anywhere; }
`;

const SCRIPT = `
(function () {
  'use strict';
  var MAX_ITEMS = 100;
  var list = document.getElementById('events');
  var pageviews = new Map();
  var names = new Map();
  var renderTimer = 0;

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function time(ms) {
    return new Date(ms).toLocaleTimeString();
  }

  function pathOf(url) {
    try {
      return new URL(url).pathname;
    } catch (error) {
      return url;
    }
  }

  function setStatus(state, text) {
    var status = document.getElementById('status');
    status.dataset.state = state;
    status.textContent = text;
  }

  function field(dl, label, key, value) {
    if (value === undefined || value === null || value === '') return;
    var dd = el('dd', '', String(value));
    dd.dataset.field = key;
    dl.append(el('dt', '', label), dd);
  }

  function card(event) {
    var item = el('li', 'event');
    item.dataset.type = event.type;
    item.dataset.seq = String(event.seq);
    var head = el('div', 'event-head');
    var title =
      event.type === 'pageview'
        ? event.url === undefined ? '(no url)' : pathOf(event.url)
        : event.name === undefined ? '(no name)' : event.name;
    var when = el('time', '', time(event.receivedAt));
    when.dateTime = new Date(event.receivedAt).toISOString();
    head.append(el('span', 'badge', event.type), el('span', 'event-title', title), when);
    item.append(head);
    var fields = el('dl', 'fields');
    field(fields, 'url', 'url', event.url);
    field(fields, 'referrer', 'referrer', event.referrer);
    field(fields, 'ip', 'ip', event.ip);
    field(fields, 'user agent', 'userAgent', event.userAgent);
    field(fields, 'code', 'trackingCode', event.trackingCode);
    item.append(fields);
    if (event.data !== undefined) {
      var data = el('pre', 'data', JSON.stringify(event.data, null, 2));
      data.dataset.field = 'data';
      item.append(data);
    }
    var more = el('details');
    more.append(el('summary', '', 'request headers'), el('pre', '', JSON.stringify(event.headers, null, 2)));
    item.append(more);
    return item;
  }

  function addEvent(event) {
    list.prepend(card(event));
    while (list.children.length > MAX_ITEMS) list.lastElementChild.remove();
    document.getElementById('empty').hidden = true;
  }

  function countRows(map, emptyText) {
    var rows = Array.from(map).sort(function (a, b) {
      return b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);
    });
    if (rows.length === 0) {
      var none = el('td', 'none', emptyText);
      none.colSpan = 2;
      var row = el('tr');
      row.append(none);
      return [row];
    }
    return rows.map(function (entry) {
      var row = el('tr');
      row.dataset.key = entry[0];
      var key = el('td', 'key', entry[0]);
      key.title = entry[0];
      row.append(key, el('td', 'num', String(entry[1])));
      return row;
    });
  }

  function render() {
    renderTimer = 0;
    document.getElementById('pageviews').tBodies[0].replaceChildren(
      ...countRows(pageviews, 'No pageviews yet.'),
    );
    document.getElementById('event-names').tBodies[0].replaceChildren(
      ...countRows(names, 'No events yet.'),
    );
  }

  function scheduleRender() {
    if (!renderTimer) renderTimer = setTimeout(render, 50);
  }

  function setTotals(totals) {
    ['recorded', 'pageviews', 'events', 'requests'].forEach(function (key) {
      document.getElementById('total-' + key).textContent = String(totals[key]);
    });
  }

  function reasonsText(counts) {
    return Object.keys(counts)
      .filter(function (reason) {
        return counts[reason] > 0;
      })
      .map(function (reason) {
        return reason + ' ' + counts[reason];
      })
      .join(', ');
  }

  function statRow(table, label, value, reasons) {
    var row = el('tr');
    row.dataset.stat = label;
    var cell = el('td', 'num', String(value));
    row.append(el('td', 'key', label), cell);
    if (reasons) {
      var detail = el('div', 'reasons', reasons);
      row.firstChild.append(detail);
    }
    table.append(row);
  }

  function setTrackers(trackers) {
    var box = document.getElementById('trackers');
    if (trackers.length === 0) {
      box.replaceChildren(
        el(
          'p',
          'hint',
          'No tracker watched. Stats show when the inspector runs inside your app: inspector.watch(tracker).',
        ),
      );
      return;
    }
    box.replaceChildren(
      ...trackers.map(function (tracker) {
        var part = el('div', 'tracker');
        part.dataset.name = tracker.name;
        part.append(el('h3', '', tracker.name));
        if (!tracker.stats) {
          part.append(el('p', 'reasons', 'stats() failed: ' + (tracker.error || 'unknown error')));
          return part;
        }
        var s = tracker.stats;
        var table = el('table');
        var body = el('tbody');
        statRow(body, 'enqueued', s.enqueued);
        statRow(body, 'delivered', s.delivered);
        statRow(body, 'queued', s.queued);
        statRow(body, 'in flight', s.inFlight);
        statRow(body, 'retries', s.retries);
        statRow(body, 'failed', s.failed, reasonsText(s.reasons.failed));
        statRow(body, 'dropped', s.dropped, reasonsText(s.reasons.dropped));
        statRow(body, 'circuit', s.circuit);
        if (s.concurrency) {
          var c = s.concurrency;
          statRow(
            body,
            'in-flight limit',
            c.limit,
            c.adaptive ? 'adaptive' + (c.baselineMs === undefined ? '' : ', baseline ' + c.baselineMs + ' ms') : 'fixed',
          );
          statRow(body, 'latency', c.latencyMs === undefined ? '-' : c.latencyMs + ' ms');
        }
        table.append(body);
        part.append(table);
        return part;
      }),
    );
  }

  function setCollector(update) {
    setTotals(update.totals);
    document.getElementById('answers').textContent =
      update.answers.length === 0
        ? 'No requests yet.'
        : 'Answers: ' +
          update.answers
            .map(function (entry) {
              return entry[0] + ' \\u00d7 ' + entry[1];
            })
            .join(', ');
    var refused = document.getElementById('refused');
    refused.replaceChildren(
      ...update.refused
        .slice()
        .reverse()
        .map(function (request) {
          return el(
            'li',
            'mono',
            time(request.at) + '  ' + request.method + ' ' + request.path + '  \\u2192 ' + request.status,
          );
        }),
    );
  }

  function applySnapshot(state) {
    document.getElementById('collector-url').textContent = state.collectorUrl;
    list.replaceChildren();
    state.events.forEach(addEvent);
    document.getElementById('empty').hidden = state.events.length > 0;
    pageviews = new Map(state.pageviewsByPath);
    names = new Map(state.eventsByName);
    render();
    setCollector(state);
    setTrackers(state.trackers);
  }

  function connect() {
    var source = new EventSource('events');
    source.addEventListener('open', function () {
      setStatus('live', 'live');
    });
    source.addEventListener('error', function () {
      if (source.readyState === EventSource.CLOSED) {
        setStatus('closed', 'disconnected: reload the page');
      } else {
        setStatus('reconnecting', 'reconnecting\\u2026');
      }
    });
    source.addEventListener('snapshot', function (message) {
      applySnapshot(JSON.parse(message.data));
    });
    source.addEventListener('collected', function (message) {
      var update = JSON.parse(message.data);
      addEvent(update.event);
      if (update.pageviewsByPath) pageviews.set(update.pageviewsByPath[0], update.pageviewsByPath[1]);
      if (update.eventsByName) names.set(update.eventsByName[0], update.eventsByName[1]);
      setTotals(update.totals);
      scheduleRender();
    });
    source.addEventListener('collector', function (message) {
      setCollector(JSON.parse(message.data));
    });
    source.addEventListener('stats', function (message) {
      setTrackers(JSON.parse(message.data));
    });
  }

  connect();
})();
`;

/** The page, with `nonce` on its one script and one style (the server's CSP allows only them). */
export function inspectorPage(nonce: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Zenovay inspector</title>
<link rel="icon" href="data:,">
<style nonce="${nonce}">${STYLE}</style>
</head>
<body>
<header>
  <h1>Zenovay inspector</h1>
  <span id="status" class="status" data-state="connecting">connecting…</span>
  <p>Point your app's <code>host</code> option at <code id="collector-url"></code>.
  Development only: this page shows what your app sends, visitors' IPs and user agents included.</p>
</header>
<main>
  <section class="feed">
    <h2>Live events <small>(newest first, the latest 100)</small></h2>
    <p id="empty">No events yet. Open your app in a browser: each pageview and event appears here as it arrives.</p>
    <ol id="events"></ol>
  </section>
  <aside>
    <section>
      <h2>Recorded</h2>
      <dl class="totals">
        <div><dt>recorded</dt><dd id="total-recorded">0</dd></div>
        <div><dt>pageviews</dt><dd id="total-pageviews">0</dd></div>
        <div><dt>events</dt><dd id="total-events">0</dd></div>
        <div><dt>requests</dt><dd id="total-requests">0</dd></div>
      </dl>
    </section>
    <section>
      <h2>Pageviews by path</h2>
      <div class="scroll"><table id="pageviews">
        <thead><tr><th>Path</th><th class="num">Views</th></tr></thead><tbody></tbody>
      </table></div>
    </section>
    <section>
      <h2>Events by name</h2>
      <div class="scroll"><table id="event-names">
        <thead><tr><th>Name</th><th class="num">Count</th></tr></thead><tbody></tbody>
      </table></div>
    </section>
    <section>
      <h2>Tracker stats</h2>
      <div id="trackers"></div>
    </section>
    <section>
      <h2>Collector</h2>
      <p id="answers" class="hint">No requests yet.</p>
      <ol id="refused" class="refused"></ol>
    </section>
  </aside>
</main>
<script nonce="${nonce}">${SCRIPT}</script>
</body>
</html>
`;
}
