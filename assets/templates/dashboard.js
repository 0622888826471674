// The dashboards' filters and charts. Every number comes from the page's embedded views, which are already
// small-cell protected at every combination of filters (assets/publish/filters.py); this script only looks
// views up, adds quarters for a custom range when every one is published, and draws. A hidden cell arrives as
// its label ("<11" or "withheld") and is drawn as a grey cross, never as a number.
(function () {
  "use strict";
  var el = document.getElementById("filter-data");
  if (!el) return;
  var D = JSON.parse(el.textContent);
  var $ = function (id) { return document.getElementById(id); };
  var AT = {}, EX = {};
  D.columns.forEach(function (c, i) { AT[c] = i; });
  D.extra_columns.forEach(function (c, i) { EX[c] = i; });
  var COLOURS = {pu: "#D55E00", ii: "#E69F00", ind: "#0072B2", other: "#56B4E9", grey: "#52606d", dark: "#1f2933"};
  var NAMES = {pu: "Potentially unnecessary", ii: "Insufficient information", ind: "Indicated",
               other: "Indicated or insufficient information (where the second is suppressed)"};
  var SUPPRESSED = "suppressed (1-10, or the cell that would reveal one)";
  var Z95 = 1.959964, Z998 = 3.090232;
  var FONT = {family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 12};

  function num(x) { return typeof x === "number"; }
  function fmt(x) { return num(x) ? Math.round(x).toLocaleString("en-US") : String(x); }
  function pct(a, b) { return num(a) && num(b) && b > 0 ? (100 * a / b).toFixed(1) + "%" : "–"; }
  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c];
    });
  }
  function view(region, period, dim, value) { return D.views[[region, period, dim, value].join("|")]; }
  function cell(row, name) { return row ? row[AT[name]] : undefined; }

  // The verdicts of a view under a rule set. Indicated is the rest of the spine MRIs, known when the other three
  // counts are published; when only insufficient information is hidden, the rest is drawn as one bar of both
  // (`other`), a sum that does not reveal the hidden part.
  function verdicts(row, rs) {
    var n = cell(row, "n"), pu = cell(row, "pu:" + rs), ii = cell(row, "ii:" + rs);
    var ind = num(n) && num(pu) && num(ii) ? n - pu - ii : "withheld";
    var other = !num(ind) && num(n) && num(pu) ? n - pu : null;
    return {n: n, pu: pu, ii: ii, ind: ind, other: other};
  }

  // A custom range of quarters: each cell the sum of its quarters' cells, or "suppressed" when one of them is
  // hidden (a hidden cell never enters a sum).
  function sumQuarters(region, dim, value, from, to) {
    var out = null;
    D.quarters.forEach(function (q) {
      if (q < from || q > to) return;
      var r = view(region, q, dim, value);
      if (!r) return;
      if (!out) out = r.map(function (x) { return x === null ? null : 0; });
      r.forEach(function (x, i) {
        if (out[i] === "suppressed" || out[i] === null) return;
        out[i] = num(x) ? out[i] + x : "suppressed";
      });
    });
    return out || "empty";
  }

  function value(id, fallback) { var e = $(id); return e ? e.value : fallback; }
  function current() {
    var facet = value("f-facet", "*");
    return {rs: value("f-rule-set", D.rule_sets[0]), region: value("f-region", "lumbar"),
            period: value("f-period", "*"), facet: facet, value: facet === "*" ? "*" : value("f-value", "*"),
            from: value("f-from", ""), to: value("f-to", "")};
  }
  function describePeriod(f) {
    return f.period === "*" ? "the whole period" : f.period === "custom" ? f.from + " to " + f.to : f.period;
  }
  function describe(f) {
    var region = f.region === "*" ? "spine MRIs (cervical, thoracic, lumbar)" : f.region + " MRIs";
    var unit = f.facet === "*" ? "" : ", " + D.facet_labels[f.facet] + " " + f.value;
    return region + ", " + describePeriod(f) + unit + ", rule set " + f.rs;
  }

  function layout(title, x, y, extra) {
    var out = {title: {text: esc(title), x: 0.01, font: {size: 14}}, template: "plotly_white", font: FONT,
               margin: {l: 70, r: 20, t: 50, b: 110}, legend: {orientation: "h", yanchor: "top", y: -0.3},
               xaxis: {title: {text: x}}, yaxis: {title: {text: y}}};
    Object.keys(extra || {}).forEach(function (k) {
      if (typeof extra[k] === "object" && out[k] && !Array.isArray(extra[k])) {
        Object.keys(extra[k]).forEach(function (j) { out[k][j] = extra[k][j]; });
      } else { out[k] = extra[k]; }
    });
    return out;
  }
  function draw(id, traces, lay) {
    var div = $(id);
    if (!div || !window.Plotly) return;
    Plotly.react(div, traces, lay, {displaylogo: false, responsive: true});
  }
  function crosses(xs, ys, names, horizontal) {
    return {type: "scatter", mode: "markers", x: horizontal ? ys : xs, y: horizontal ? xs : ys, name: SUPPRESSED,
            text: names.map(function (n) { return esc(n) + ": suppressed"; }), hovertemplate: "%{text}<extra></extra>",
            marker: {symbol: "x-thin-open", size: 11, color: COLOURS.grey, line: {width: 2, color: COLOURS.grey}},
            cliponaxis: false, legendrank: 2000};
  }
  function note(id, text) { var e = $(id); if (e) e.textContent = text; }

  // Bars of the three verdicts per value of a dimension; a hidden cell is a cross at the end of its bar.
  function stacked(id, labels, rows, title, axis, opts) {
    opts = opts || {};
    var horizontal = !opts.vertical, grouped = !!opts.grouped;
    var traces = [], hidden = {x: [], y: [], names: []};
    var slots = labels.map(function (_, i) { return grouped ? i : labels[i]; });
    var series = ["ind", "other", "pu", "ii"].filter(function (k) {
      return k !== "other" || rows.some(function (r) { return num(r.other); });
    });
    var bars = grouped ? series.length : 1;
    series.forEach(function (k, at) {
      var values = rows.map(function (r) { return num(r[k]) ? r[k] : null; });
      var t = {type: "bar", name: NAMES[k], marker: {color: COLOURS[k]}, customdata: labels,
               hovertemplate: "%{customdata}: %{" + (horizontal ? "x" : "y") + ":,} spine MRIs<extra>" + NAMES[k] + "</extra>"};
      if (horizontal) { t.y = slots; t.x = values; t.orientation = "h"; } else { t.x = slots; t.y = values; }
      traces.push(t);
      if (k === "other") return;
      rows.forEach(function (r, i) {
        if (num(r[k]) || (k === "ind" && num(r.other))) return;  // indicated is inside the combined bar
        var pos = grouped ? i + (at - (bars - 1) / 2) * 0.8 / bars : slots[i];
        var end = grouped ? 0 : ["ind", "other", "pu", "ii"].reduce(function (s, j) { return s + (num(r[j]) ? r[j] : 0); }, 0);
        hidden.x.push(pos); hidden.y.push(end); hidden.names.push(labels[i] + ", " + NAMES[k]);
      });
    });
    if (hidden.x.length) traces.push(crosses(hidden.x, hidden.y, hidden.names, horizontal));
    var extra = {barmode: grouped ? "group" : "stack", height: horizontal ? Math.max(320, 28 * labels.length + 150) : 420};
    if (horizontal) {
      extra.yaxis = {autorange: "reversed", title: {text: axis}, type: "category", automargin: true};
      extra.xaxis = {title: {text: "spine MRIs"}};
    } else if (grouped) {
      extra.xaxis = {title: {text: axis}, tickmode: "array", tickvals: slots, ticktext: labels, range: [-0.5, labels.length - 0.5]};
      extra.yaxis = {title: {text: "spine MRIs"}};
      extra.bargap = 0.2; extra.bargroupgap = 0;
    } else {
      extra.xaxis = {title: {text: axis}, type: "category"};
      extra.yaxis = {title: {text: "spine MRIs"}};
    }
    draw(id, traces, layout(title, "", "", extra));
  }

  function limits(centre, n, z) {
    var half = z * Math.sqrt(centre * (1 - centre) / n);
    return [Math.max(0, centre - half), Math.min(1, centre + half)];
  }

  // Funnel plot: each unit's rate against its volume, 95% and 99.8% limits around the centre (Spiegelhalter 2005).
  function funnel(id, units, centre, title, xTitle, yTitle, reference, adjusted, plural) {
    if (!units.length || !(centre > 0 && centre < 1)) { draw(id, [], layout(title + " (no unit to show)", xTitle, yTitle)); return; }
    var top = Math.max.apply(null, units.map(function (u) { return u.n; }));
    var ns = [];
    for (var i = 1; i <= 200; i++) ns.push(Math.max(5, top * i / 200));
    var traces = [];
    [[Z998, "99.8% limits", "dash"], [Z95, "95% limits", "dot"]].forEach(function (z) {
      traces.push({type: "scatter", mode: "lines", x: ns, y: ns.map(function (n) { return limits(centre, n, z[0])[1]; }),
                   name: z[1], line: {color: "#7b8794", dash: z[2]}, hoverinfo: "skip"});
      traces.push({type: "scatter", mode: "lines", x: ns, y: ns.map(function (n) { return limits(centre, n, z[0])[0]; }),
                   showlegend: false, line: {color: "#7b8794", dash: z[2]}, hoverinfo: "skip"});
    });
    traces.push({type: "scatter", mode: "lines", x: [0, top * 1.05], y: [centre, centre],
                 name: "overall " + (100 * centre).toFixed(1) + "%", line: {color: COLOURS.dark, width: 1}});
    if (reference) traces.push({type: "scatter", mode: "lines", x: [0, top * 1.05], y: [reference.rate, reference.rate],
                                name: esc(reference.label), line: {color: "#009E73", width: 2, dash: "longdash"}});
    traces.push({type: "scatter", mode: "markers", name: plural || "units", x: units.map(function (u) { return u.n; }),
                 y: units.map(function (u) { return u.rate; }), text: units.map(function (u) { return esc(u.label); }),
                 customdata: units.map(function (u) { return u.x; }),
                 hovertemplate: adjusted ? "%{text}: %{y:.1%} adjusted for case mix (%{x} spine MRIs)<extra></extra>"
                                         : "%{text}: %{y:.1%} (%{customdata} of %{x})<extra></extra>",
                 marker: {color: COLOURS.pu, size: 9, opacity: 0.85, symbol: adjusted ? "diamond" : "circle",
                          line: {color: "white", width: 1}}});
    draw(id, traces, layout(title, xTitle, yTitle, {yaxis: {tickformat: ".0%", rangemode: "tozero"}, height: 420}));
  }

  function options(select, values, label) {
    select.innerHTML = "";
    values.forEach(function (v) {
      var o = document.createElement("option"); o.value = v; o.textContent = label ? label(v) : v; select.appendChild(o);
    });
  }

  // --- the overview ------------------------------------------------------------------------------------------
  function overview() {
    function fillValues() {
      var facet = $("f-facet").value;
      $("f-value-label").hidden = facet === "*";
      if (facet === "*") return;
      $("f-value-name").textContent = D.facet_labels[facet];
      options($("f-value"), D.facets[facet]);
    }
    function viewOf(f) {
      if (f.period === "custom") return f.from > f.to ? "empty" : sumQuarters(f.region, f.facet, f.value, f.from, f.to);
      if (f.period.length === 7 && f.period.indexOf("Q") < 0 && f.facet !== "*") return "monthly";
      return view(f.region, f.period, f.facet, f.value) || "empty";
    }
    function show() {
      var f = current(), v = viewOf(f);
      $("f-range").hidden = f.period !== "custom";
      $("f-describes").textContent = describe(f);
      var label = f.region === "*" ? "spine MRIs" : f.region + " MRIs";
      if (!Array.isArray(v)) {
        var why = {empty: "none in this view", monthly: "monthly figures are for all units together; choose a quarter or a year"}[v];
        ["t-n", "t-pu", "t-op8", "t-cost"].forEach(function (id) { $(id).textContent = "–"; });
        $("t-n-label").textContent = label + ": " + why;
        $("t-pu-label").textContent = "potentially unnecessary under the " + f.rs + " rule set";
        $("t-op8-label").textContent = "CMS OP-8";
        $("t-cost-label").textContent = "estimated cost";
      } else {
        var n = cell(v, "n"), pu = cell(v, "pu:" + f.rs), cost = cell(v, "cost:" + f.rs);
        $("t-n").textContent = fmt(n);
        $("t-n-label").textContent = label + " in scope";
        $("t-pu").textContent = pct(pu, n);
        $("t-pu-label").textContent = "potentially unnecessary under the " + f.rs + " rule set (" + fmt(pu) + " of " + fmt(n) + ")";
        var a = cell(v, "op8n"), b = cell(v, "op8d");
        if (f.region === "lumbar" && f.rs === D.rule_sets[0]) {
          $("t-op8").textContent = pct(a, b);
          $("t-op8-label").textContent = "CMS OP-8: lumbar MRIs without prior conservative therapy (" + fmt(a) + " of " + fmt(b) + " eligible; lower is better)";
        } else {
          $("t-op8").textContent = "–";
          $("t-op8-label").textContent = f.region !== "lumbar" ? (f.region === "*" ? "CMS OP-8: choose lumbar" : "CMS OP-8 applies to lumbar MRIs")
            : "CMS OP-8 is computed with the " + D.rule_sets[0] + " rule set";
        }
        $("t-cost").textContent = num(cost) ? fmt(cost) + " " + D.currency : "–";
        $("t-cost-label").textContent = "estimated cost of the potentially unnecessary MRIs" + (num(cost) ? "" : " (not shown with a suppressed count)");
      }
      quarterly(f);
    }
    function quarterly(f) {
      // A month chosen: the months of its quarter (months exist for all units together only); else quarters.
      // A month chosen for all units: the months of its quarter (months exist for all units together only); a
      // month with a unit: the quarter it falls in; else the quarters of the period.
      var month = /^[0-9]{4}-[0-9]{2}$/.test(f.period), monthly = month && f.facet === "*";
      var qs = monthly ? D.months.filter(function (m) { return quarterOf(m) === quarterOf(f.period); })
        : D.quarters.filter(function (q) {
          if (f.period === "custom") return q >= f.from && q <= f.to;
          if (f.period === "*") return true;
          return month ? q === quarterOf(f.period) : q.indexOf(f.period.slice(0, 4)) === 0 && (f.period.length === 4 || q === f.period);
        });
      var x = [], y = [], hx = [], text = [];
      qs.forEach(function (q) {
        var r = view(f.region, q, f.facet, f.value);
        if (!r) return;
        var n = cell(r, "n"), pu = cell(r, "pu:" + f.rs);
        if (num(n) && num(pu) && n > 0) { x.push(q); y.push(pu / n); text.push(fmt(pu) + " of " + fmt(n)); }
        else hx.push(q);
      });
      var traces = [{type: "bar", x: x, y: y, text: text, name: "potentially unnecessary share", textposition: "none",
                     marker: {color: COLOURS.pu}, hovertemplate: "%{x}: %{y:.1%} (%{text})<extra></extra>"}];
      if (hx.length) traces.push(crosses(hx, hx.map(function () { return 0; }), hx, false));
      draw("filtered-trend", traces, layout(monthly ? "Potentially unnecessary share by month, " + quarterOf(f.period)
        : "Potentially unnecessary share by quarter", monthly ? "month of scan" : "quarter of scan",
        "share potentially unnecessary", {yaxis: {tickformat: ".0%", rangemode: "tozero"},
        xaxis: {type: "category", categoryorder: "array", categoryarray: qs}, height: 340}));
    }
    ["f-rule-set", "f-region", "f-period", "f-from", "f-to", "f-value"].forEach(function (id) {
      $(id).addEventListener("change", show);
    });
    $("f-facet").addEventListener("change", function () { fillValues(); show(); });
    fillValues();
    show();
  }
  function quarterOf(month) { return month.slice(0, 4) + "-Q" + (Math.floor((parseInt(month.slice(5, 7), 10) - 1) / 3) + 1); }

  // --- the breakdowns page -----------------------------------------------------------------------------------
  function breakdowns() {
    function rowsOf(f, dim) {
      var labels = [], rows = [];
      (D.dims[dim] || D.facets[dim] || []).forEach(function (v) {
        var r = view(f.region, f.period, dim, v);
        if (!r) return;
        labels.push(v); rows.push(verdicts(r, f.rs));
      });
      return {labels: labels, rows: rows};
    }
    function show() {
      var f = current();
      note("f-describes", describe(f));
      var whole = verdicts(view(f.region, f.period, "*", "*"), f.rs);
      note("b-total", "In this view: " + fmt(whole.n) + " spine MRIs in scope, " + fmt(whole.pu) + " potentially unnecessary ("
           + pct(whole.pu, whole.n) + ").");
      reasons(f);
      var s = rowsOf(f, "specialty");
      var shares = s.rows.map(function (r) { return num(r.pu) && num(r.n) && r.n > 0 ? r.pu / r.n : null; });
      var hidden = s.labels.filter(function (_, i) { return shares[i] === null; });
      var bar = [{type: "bar", orientation: "h", y: s.labels, x: shares, marker: {color: COLOURS.pu}, name: "share potentially unnecessary",
                  customdata: s.rows.map(function (r) { return fmt(r.pu) + " of " + fmt(r.n); }),
                  hovertemplate: "%{y}: %{x:.1%} (%{customdata})<extra></extra>"}];
      if (hidden.length) bar.push(crosses(hidden, hidden.map(function () { return 0; }), hidden, true));
      draw("b-specialty-share", bar, layout("Share of spine MRIs potentially unnecessary, by referring specialty", "share potentially unnecessary",
           "referring specialty", {xaxis: {tickformat: ".0%", rangemode: "tozero"}, yaxis: {autorange: "reversed", type: "category", automargin: true},
           height: Math.max(320, 30 * s.labels.length + 140)}));
      stacked("b-specialty", s.labels, s.rows, "Spine MRIs by referring specialty and verdict", "referring specialty");
      [["facility", "b-facility", "Spine MRIs by facility and verdict"],
       ["setting", "b-setting", "Spine MRIs by care setting and verdict"],
       ["age", "b-age", "Spine MRIs by age band and verdict"],
       ["findings", "b-findings", "Findings by verdict"]].forEach(function (d) {
        var r = rowsOf(f, d[0]);
        stacked(d[1], r.labels, r.rows, d[2], D.facet_labels[d[0]]);
      });
      // Every bin on the axis, in order; a bin with no scans in this view is an empty slot.
      var bins = D.wait_bins.map(function (b) {
        var r = view(f.region, f.period, "wait", b);
        return r ? verdicts(r, f.rs) : {n: 0, pu: 0, ii: 0, ind: 0, other: null};
      });
      stacked("b-wait", D.wait_bins, bins, "Days from referral to scan, by verdict", "days from referral to scan",
              {vertical: true, grouped: true});
      safety(f);
    }
    function reasons(f) {
      var x = D.extras[f.region + "|" + f.period];
      var prefix = "reason:" + f.rs + ":";
      var rows = D.extra_columns.filter(function (c) { return c.indexOf(prefix) === 0; })
        .map(function (c) { return [c.slice(prefix.length), x ? x[EX[c]] : "–"]; })
        .filter(function (r) { return r[1] !== 0; });
      rows.sort(function (a, b) { return (num(b[1]) ? b[1] : -1) - (num(a[1]) ? a[1] : -1) || (a[0] < b[0] ? -1 : 1); });
      $("b-reasons").innerHTML = "<thead><tr><th>reason code</th><th class=\"num\">spine MRIs</th></tr></thead><tbody>"
        + rows.map(function (r) { return "<tr><td>" + esc(r[0]) + "</td><td class=\"num\">" + esc(fmt(r[1])) + "</td></tr>"; }).join("")
        + "</tbody>";
    }
    function safety(f) {
      var x = D.extras[f.region + "|" + f.period], r = view(f.region, f.period, "*", "*");
      $("b-safety").innerHTML = "<thead><tr><th>rule set</th><th class=\"num\">MRI contraindication documented</th>"
        + "<th class=\"num\">contrast without an indication for it</th><th class=\"num\">spine MRIs</th></tr></thead><tbody>"
        + D.rule_sets.map(function (rs) {
          var a = x ? x[EX["safety:" + rs]] : "–", b = x ? x[EX["contrast:" + rs]] : "–";
          return "<tr><td>" + esc(rs) + "</td><td class=\"num\">" + esc(fmt(a)) + "</td><td class=\"num\">" + esc(fmt(b))
            + "</td><td class=\"num\">" + esc(fmt(cell(r, "n"))) + "</td></tr>";
        }).join("") + "</tbody>";
    }
    ["f-rule-set", "f-region", "f-period"].forEach(function (id) { $(id).addEventListener("change", show); });
    show();
  }

  // --- the trends page ---------------------------------------------------------------------------------------
  function trends() {
    function months(f) {
      return D.months.filter(function (m) { return f.period === "*" || m.indexOf(f.period) === 0; });
    }
    function pChart(f) {
      var ms = months(f), x = [], p = [], n = [], u = [], hidden = [];
      ms.forEach(function (m) {
        var r = view(f.region, m, "*", "*");
        if (!r) return;
        var a = cell(r, "pu:" + f.rs), b = cell(r, "n");
        if (num(a) && num(b) && b > 0) { x.push(m); p.push(a / b); n.push(b); u.push(a); } else hidden.push(m);
      });
      var total = u.reduce(function (s, v) { return s + v; }, 0), den = n.reduce(function (s, v) { return s + v; }, 0);
      var centre = den ? total / den : 0;
      var lo = n.map(function (k) { return limits(centre, k, 3)[0]; }), hi = n.map(function (k) { return limits(centre, k, 3)[1]; });
      // Special causes: beyond a limit, or 8 or more in a row on one side of the centre (Western Electric rule 4).
      var special = p.map(function (v, i) { return v < lo[i] || v > hi[i]; });
      var side = p.map(function (v) { return v === centre ? null : v > centre; }), start = 0;
      for (var i = 1; i <= side.length; i++) {
        if (i === side.length || side[i] !== side[start] || side[i] === null) {
          if (side[start] !== null && i - start >= 8) for (var j = start; j < i; j++) special[j] = true;
          start = i;
        }
      }
      var traces = [
        {type: "scatter", x: x, y: hi, name: "upper control limit (3σ)", line: {color: "#7b8794", dash: "dash", shape: "hv"}},
        {type: "scatter", x: x, y: lo, name: "lower control limit (3σ)", line: {color: "#7b8794", dash: "dash", shape: "hv"}},
        {type: "scatter", x: x, y: x.map(function () { return centre; }), name: "centre line " + (100 * centre).toFixed(1) + "%",
         line: {color: COLOURS.dark, width: 1}},
        {type: "scatter", mode: "lines+markers", x: x, y: p, name: "monthly share", line: {color: COLOURS.pu},
         customdata: u.map(function (a, k) { return fmt(a) + " of " + fmt(n[k]); }),
         hovertemplate: "%{x}: %{y:.1%} (%{customdata} spine MRIs)<extra></extra>"}];
      var sx = x.filter(function (_, k) { return special[k]; });
      if (sx.length) traces.push({type: "scatter", mode: "markers", x: sx, y: p.filter(function (_, k) { return special[k]; }),
        name: "special cause (beyond a limit, or 8 in a row on one side)",
        marker: {symbol: "diamond-open", size: 14, color: COLOURS.dark, line: {width: 2}}});
      if (hidden.length) traces.push(crosses(hidden, hidden.map(function () { return 0; }), hidden, false));
      draw("t-pchart", traces, layout("Potentially unnecessary share per month (p-chart)", "month of scan",
        "share of spine MRIs", {yaxis: {tickformat: ".0%", rangemode: "tozero"},
        xaxis: {type: "category", categoryorder: "array", categoryarray: ms}}));
      note("t-pchart-note", (x.length < 2 ? "Too few months with published counts for control limits. " : "")
        + (sx.length ? "Special-cause signals in " + sx.join(", ") + "." : "No special-cause signal: the variation is what chance alone would give.")
        + (hidden.length ? " Months with a suppressed count (crosses) are left out: " + hidden.join(", ") + "." : ""));
      var shown = ms.filter(function (m) { return view(f.region, m, "*", "*"); });
      stacked("t-volume", shown, shown.map(function (m) { return verdicts(view(f.region, m, "*", "*"), f.rs); }),
              "Spine MRIs per month by verdict", "month of scan", {vertical: true});
    }
    function units(f, dim, num_, den_) {
      var out = [], hidden = 0;
      (D.dims[dim] || D.facets[dim] || []).forEach(function (v) {
        var r = view(f.region, f.period, dim, v);
        if (!r) return;
        var a = cell(r, num_), b = cell(r, den_);
        if (num(a) && num(b) && b > 0) out.push({label: v, x: a, n: b, rate: a / b, exp: cell(r, "exp:" + f.rs)});
        else hidden++;
      });
      return {units: out, hidden: hidden};
    }
    function show() {
      var f = current();
      note("f-describes", describe(f));
      pChart(f);
      var all = view(f.region, f.period, "*", "*");
      var centre = num(cell(all, "n")) && num(cell(all, "pu:" + f.rs)) ? cell(all, "pu:" + f.rs) / cell(all, "n") : null;
      var allExp = cell(all, "exp:" + f.rs);
      [["provider", "referring provider", "referring providers", "t-providers"], ["facility", "facility", "facilities", "t-facilities"]].forEach(function (d) {
        var got = units(f, d[0], "pu:" + f.rs, "n");
        funnel(d[3], got.units, centre, "Potentially unnecessary share by " + d[1] + " against volume (funnel plot)",
               "spine MRIs per " + d[1], "share potentially unnecessary", null, false, d[2]);
        // Indirect standardisation within the view: observed / (expected recalibrated to the view) x the view's rate.
        var calib = num(allExp) && allExp > 0 && centre !== null ? cell(all, "pu:" + f.rs) / allExp : null;
        var adjusted = got.units.filter(function (u) { return num(u.exp) && u.exp > 0 && calib; }).map(function (u) {
          return {label: u.label, n: u.n, x: u.x, rate: Math.min(1, u.x / (u.exp * calib) * centre)};
        });
        funnel(d[3] + "-adjusted", adjusted, centre, "Case-mix-adjusted share by " + d[1] + " (funnel plot)",
               "spine MRIs per " + d[1], "adjusted share potentially unnecessary", null, true, d[2]);
        note(d[3] + "-note", got.hidden + " " + d[2] + " with a suppressed count are not shown.");
      });
      var lumbar = {region: "lumbar", period: f.period, rs: D.rule_sets[0], facet: "*", value: "*"};
      var l = view("lumbar", f.period, "*", "*");
      var op8 = units(lumbar, "facility", "op8n", "op8d");
      var c = num(cell(l, "op8n")) && num(cell(l, "op8d")) && cell(l, "op8d") > 0 ? cell(l, "op8n") / cell(l, "op8d") : null;
      funnel("t-op8", op8.units, c, "CMS OP-8 by facility: lumbar MRIs without prior conservative therapy",
             "OP-8-eligible lumbar MRIs per facility", "share without prior conservative therapy", D.reference, false, "facilities");
      note("t-op8-note", op8.hidden + " facility(ies) with a suppressed count are not shown. OP-8 uses the lumbar MRIs and the "
           + D.rule_sets[0] + " rule set's OP-8 logic whatever the filters say; lower is better.");
    }
    ["f-rule-set", "f-region", "f-period"].forEach(function (id) { $(id).addEventListener("change", show); });
    show();
  }

  // --- the rule-set page -------------------------------------------------------------------------------------
  var VERDICTS = ["indicated", "potentially_unnecessary", "insufficient_information"];
  var VERDICT_LABELS = {indicated: "Indicated", potentially_unnecessary: "Potentially unnecessary",
                        insufficient_information: "Insufficient information"};
  function ruleSets() {
    function table(id, head, rows, numeric) {
      $(id).innerHTML = "<thead><tr>" + head.map(function (h, i) {
        return "<th" + (numeric.indexOf(i) >= 0 ? " class=\"num\"" : "") + ">" + esc(h) + "</th>"; }).join("")
        + "</tr></thead><tbody>" + rows.map(function (r) {
          return "<tr>" + r.map(function (v, i) {
            return "<td" + (numeric.indexOf(i) >= 0 ? " class=\"num\"" : "") + ">" + esc(v === null || v === undefined ? "–" : fmt(v)) + "</td>"; }).join("") + "</tr>";
        }).join("") + "</tbody>";
    }
    function show() {
      var f = current();
      note("f-describes", (f.region === "*" ? "spine MRIs (cervical, thoracic, lumbar)" : f.region + " MRIs") + ", " + describePeriod(f));
      var row = view(f.region, f.period, "*", "*"), x = D.extras[f.region + "|" + f.period];
      var amounts = D.amounts[f.region + "|" + f.period] || {};
      table("r-verdicts", ["rule set", "version", "indicated", "potentially unnecessary", "insufficient information", "spine MRIs"],
        D.rule_sets.map(function (rs) {
          var v = verdicts(row, rs);
          return [rs, D.versions[rs] || "", v.ind, v.pu, v.ii, v.n];
        }), [2, 3, 4, 5]);
      if ($("r-shift")) {
        var a = D.rule_sets[0], b = D.rule_sets[1];
        var z = VERDICTS.map(function (u) { return VERDICTS.map(function (w) {
          var c = x ? x[EX["cross:" + u + ":" + w]] : undefined; return num(c) ? c : null; }); });
        var text = VERDICTS.map(function (u) { return VERDICTS.map(function (w) {
          var c = x ? x[EX["cross:" + u + ":" + w]] : undefined;
          return c === undefined ? "0" : fmt(c); }); });
        var labels = VERDICTS.map(function (v) { return VERDICT_LABELS[v]; });
        var annotations = [];
        z.forEach(function (r, i) { r.forEach(function (v, j) {
          if (v === null) annotations.push({x: labels[j], y: labels[i], text: text[i][j], showarrow: false, font: {color: COLOURS.grey}});
        }); });
        draw("r-shift", [{type: "heatmap", z: z, x: labels, y: labels, text: text, texttemplate: "%{text}", showscale: false,
                          colorscale: [[0, "#f0f4f8"], [1, "#0072B2"]], hoverongaps: true,
                          hovertemplate: esc(a) + " %{y}, " + esc(b) + " %{x}: %{text} scans<extra></extra>"}],
             layout("The same spine MRIs under both rule sets", esc(b) + " verdict", esc(a) + " verdict",
                    {yaxis: {autorange: "reversed", automargin: true}, annotations: annotations, height: 420,
                     margin: {l: 170, r: 20, t: 50, b: 70}}));
      }
      var rows = [];
      D.rule_sets.forEach(function (rs) {
        var v = verdicts(row, rs), count = {indicated: v.ind, potentially_unnecessary: v.pu, insufficient_information: v.ii};
        VERDICTS.forEach(function (c) {
          var m = amounts[rs + "|" + c];
          rows.push([rs, c.replace(/_/g, " "), count[c], m ? m[0] : null, m ? m[1] : null]);
        });
      });
      table("r-resources", ["rule set", "verdict", "spine MRIs", "scanner hours", "estimated cost (" + D.currency + ")"], rows, [2, 3, 4]);
    }
    ["f-region", "f-period"].forEach(function (id) { $(id).addEventListener("change", show); });
    show();
  }

  var page = document.body.getAttribute("data-page");
  if (page === "rule_sets") ruleSets();
  else if (page === "index") overview();
  else if (page === "breakdowns") breakdowns();
  else if (page === "trends") trends();
})();
