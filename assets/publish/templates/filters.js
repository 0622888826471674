// The overview's filters: look up the embedded, already protected view for the chosen filters and show it.
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("filter-data").textContent);
  var $ = function (id) { return document.getElementById(id); };
  var K = D.rule_sets.length;
  function num(x) { return typeof x === "number"; }
  function fmt(x) { return num(x) ? x.toLocaleString("en-US") : String(x); }
  function pct(a, b) { return num(a) && num(b) && b > 0 ? (100 * a / b).toFixed(1) + "%" : "–"; }
  function row(region, period, facet, value) { return D.views[[region, period, facet, value].join("|")]; }
  // The cells of one view: [n, pu per rule set, cost per rule set, (lumbar) op8 numerator, op8 denominator].
  function sumQuarters(region, facet, value, from, to) {
    var out = null, hidden = false;
    D.quarters.forEach(function (q) {
      if (q < from || q > to) return;
      var r = row(region, q, facet, value);
      if (!r) return;  // no scans of this unit in that quarter
      if (!out) out = r.map(function () { return 0; });
      r.forEach(function (x, i) { if (num(x)) out[i] += x; else if (x !== null) hidden = true; });
    });
    if (hidden) return "suppressed";
    return out;
  }
  function current() {
    var facet = $("f-facet").value;
    return {
      rs: $("f-rule-set").value, region: $("f-region").value, period: $("f-period").value, facet: facet,
      value: facet === "*" ? "*" : $("f-value").value, from: $("f-from").value, to: $("f-to").value
    };
  }
  function viewOf(f) {
    if (f.period === "custom") {
      if (f.from > f.to) return "empty";
      return sumQuarters(f.region, f.facet, f.value, f.from, f.to);
    }
    return row(f.region, f.period, f.facet, f.value) || "empty";
  }
  function describe(f) {
    var region = f.region === "*" ? "spine MRIs (cervical, thoracic, lumbar)" : f.region + " MRIs";
    var period = f.period === "*" ? "the whole period" : f.period === "custom" ? f.from + " to " + f.to : f.period;
    var unit = f.facet === "*" ? "" : ", " + D.facet_labels[f.facet] + " " + f.value;
    return region + ", " + period + unit + ", rule set " + f.rs;
  }
  function fillValues() {
    var facet = $("f-facet").value, sel = $("f-value");
    $("f-value-label").hidden = facet === "*";
    if (facet === "*") return;
    $("f-value-name").textContent = D.facet_labels[facet];
    sel.innerHTML = "";
    D.facets[facet].forEach(function (v) {
      var o = document.createElement("option"); o.value = v; o.textContent = v; sel.appendChild(o);
    });
  }
  function show() {
    var f = current(), v = viewOf(f), i = D.rule_sets.indexOf(f.rs);
    $("f-range").hidden = f.period !== "custom";
    $("f-describes").textContent = describe(f);
    var label = f.region === "*" ? "spine MRIs" : f.region + " MRIs";
    if (v === "empty" || v === "suppressed") {
      var why = v === "empty" ? "none in this view" : "suppressed: a quarter in the range holds a small count";
      ["t-n", "t-pu", "t-op8", "t-cost"].forEach(function (id) { $(id).textContent = "–"; });
      $("t-n-label").textContent = label + ": " + why;
      $("t-pu-label").textContent = "potentially unnecessary under the " + f.rs + " rule set";
      $("t-op8-label").textContent = "CMS OP-8";
      $("t-cost-label").textContent = "estimated cost";
    } else {
      var n = v[0], pu = v[1 + i], cost = v[1 + K + i];
      $("t-n").textContent = fmt(n);
      $("t-n-label").textContent = label + " in scope";
      $("t-pu").textContent = pct(pu, n);
      $("t-pu-label").textContent = "potentially unnecessary under the " + f.rs + " rule set (" + fmt(pu) + " of " + fmt(n) + ")";
      if (v.length > 1 + 2 * K) {
        var a = v[1 + 2 * K], b = v[2 + 2 * K];
        $("t-op8").textContent = i === 0 ? pct(a, b) : "–";
        $("t-op8-label").textContent = i === 0 ? "CMS OP-8: lumbar MRIs without prior conservative therapy (" + fmt(a) + " of " + fmt(b) + " eligible; lower is better)" : "CMS OP-8 is computed with the " + D.rule_sets[0] + " rule set";
      } else {
        var lumbar = f.region === "*" ? null : true;
        $("t-op8").textContent = "–";
        $("t-op8-label").textContent = lumbar ? "CMS OP-8 applies to lumbar MRIs" : "CMS OP-8: choose lumbar";
      }
      $("t-cost").textContent = num(cost) ? fmt(cost) + " " + D.currency : "–";
      $("t-cost-label").textContent = "estimated cost of the potentially unnecessary MRIs" + (num(cost) ? "" : " (not shown with a suppressed count)");
    }
    chart(f, i);
  }
  function chart(f, i) {
    if (!window.Plotly) return;
    var qs = D.quarters.filter(function (q) {
      if (f.period === "custom") return q >= f.from && q <= f.to;
      if (f.period === "*") return true;
      return q.indexOf(f.period) === 0;
    });
    var x = [], y = [], hx = [], text = [];
    qs.forEach(function (q) {
      var r = row(f.region, q, f.facet, f.value);
      if (!r) return;
      var n = r[0], pu = r[1 + i];
      if (num(n) && num(pu) && n > 0) { x.push(q); y.push(pu / n); text.push(fmt(pu) + " of " + fmt(n)); }
      else { hx.push(q); }
    });
    var traces = [{type: "bar", x: x, y: y, text: text, name: "potentially unnecessary share",
                   marker: {color: "#D55E00"}, hovertemplate: "%{x}: %{y:.1%} (%{text})<extra></extra>"}];
    if (hx.length) traces.push({type: "scatter", mode: "markers", x: hx, y: hx.map(function () { return 0; }),
      name: "suppressed (small counts)", marker: {symbol: "x-thin-open", size: 11, color: "#52606d", line: {width: 2, color: "#52606d"}},
      hovertemplate: "%{x}: suppressed<extra></extra>", cliponaxis: false});
    Plotly.react("filtered-trend", traces, {
      title: {text: "Potentially unnecessary share by quarter: " + describe(f), x: 0.01, font: {size: 14}},
      yaxis: {title: {text: "share potentially unnecessary"}, tickformat: ".0%", rangemode: "tozero"},
      xaxis: {title: {text: "quarter of scan"}, type: "category", categoryorder: "array", categoryarray: qs},
      margin: {l: 70, r: 20, t: 50, b: 60}, template: "plotly_white", legend: {orientation: "h", y: -0.3},
      font: {family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 12}
    }, {displaylogo: false, responsive: true});
  }
  ["f-rule-set", "f-region", "f-period", "f-from", "f-to", "f-value"].forEach(function (id) {
    $(id).addEventListener("change", show);
  });
  $("f-facet").addEventListener("change", function () { fillValues(); show(); });
  fillValues();
  show();
})();
