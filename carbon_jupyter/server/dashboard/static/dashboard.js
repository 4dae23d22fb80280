// The dashboard's few moving parts: the compare button, the live runs list, a live run's plot.
// Every text from the server is set with textContent, never parsed as markup.
(function () {
  "use strict";

  function readData(id) {
    const el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  async function getJSON(url) {
    const response = await fetch(url, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
      cache: "no-store",
    });
    if (!response.ok) throw new Error(url + " answered " + response.status);
    return response.json();
  }

  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    return td;
  }

  // -- the runs page: compare the checked runs ---------------------------------------------
  function setupCompare() {
    const form = document.getElementById("compare-form");
    if (!form) return;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      const ids = Array.from(form.querySelectorAll('input[name="run"]:checked'), (b) => b.value);
      if (!ids.length) {
        let hint = document.getElementById("compare-hint");
        if (!hint) {
          hint = document.createElement("span");
          hint.id = "compare-hint";
          hint.setAttribute("role", "status");
          document.getElementById("compare-button").after(hint);
        }
        hint.textContent = "Tick the runs to compare first.";
        return;
      }
      window.location.href = "/compare?runs=" + ids.map(encodeURIComponent).join(",");
    });
  }

  // -- the runs page: the live runs, refreshed while the page is open ---------------------
  const LIVE_FIELDS = ["user", "project", "host", "started", "duration", "power", "energy", "co2"];

  function setupLive() {
    const config = readData("runs-data");
    const table = document.getElementById("live-table");
    const none = document.getElementById("live-none");
    if (!config || !table) return;

    function show(runs) {
      const rows = runs.map(function (run) {
        const tr = document.createElement("tr");
        tr.dataset.runId = run.id;
        const link = document.createElement("a");
        link.href = "/runs/" + encodeURIComponent(run.id);
        link.textContent = run.title;
        const first = document.createElement("td");
        first.appendChild(link);
        tr.appendChild(first);
        for (const name of LIVE_FIELDS) tr.appendChild(cell(run[name]));
        return tr;
      });
      table.tBodies[0].replaceChildren(...rows);
      table.hidden = runs.length === 0;
      none.hidden = runs.length !== 0;
    }

    async function tick() {
      if (!document.hidden) {
        try {
          show((await getJSON(config.url)).runs);
        } catch (error) {
          console.warn("live runs:", error);
        }
      }
      window.setTimeout(tick, config.interval_ms);
    }
    window.setTimeout(tick, config.interval_ms);
  }

  // -- the runs page: suggestions for the filter fields, read when one is first used ----
  function setupFacets() {
    const config = readData("runs-data");
    const form = document.querySelector("form.filters");
    if (!config || !form) return;
    let asked = false;
    form.addEventListener("focusin", async function () {
      if (asked) return;
      asked = true;
      try {
        const facets = await getJSON(config.facets_url);
        for (const list of form.querySelectorAll("datalist[data-facet]")) {
          const options = (facets[list.dataset.facet] || []).map(function (value) {
            const option = document.createElement("option");
            option.value = value;
            return option;
          });
          list.replaceChildren(...options);
        }
      } catch (error) {
        asked = false;
        console.warn("filter suggestions:", error);
      }
    });
  }

  // -- one run's page: the plot grows while the run is live -------------------------------
  function findSource(name) {
    const bokeh = window.Bokeh;
    if (!bokeh || !bokeh.documents) return null;
    for (const doc of bokeh.documents) {
      const model = doc.get_model_by_name(name);
      if (model) return model;
    }
    return null;
  }

  function setupRun() {
    const config = readData("run-data");
    if (!config || !config.live) return;
    let next = config.next_seq;

    function setText(id, text) {
      const el = document.getElementById(id);
      if (el && text != null) el.textContent = text;
    }

    async function tick() {
      let again = true;
      try {
        const source = findSource(config.source);
        if (config.has_plot && !source) {
          window.setTimeout(tick, 200); // BokehJS is still drawing the page
          return;
        }
        const answer = await getJSON(config.rows_url + "?since_seq=" + encodeURIComponent(next));
        const added = answer.rows.t_s.length;
        if (added && !source) {
          window.location.reload(); // the first samples of a run shown without a plot
          return;
        }
        if (added) {
          const columns = {};
          for (const [name, values] of Object.entries(answer.rows)) {
            columns[name] = Float64Array.from(values, (v) => (v === null ? NaN : v));
          }
          source.stream(columns);
          if (source.get_length() > config.max_rows) again = false;
        }
        next = answer.next_seq;
        setText("run-energy", answer.energy);
        setText("run-co2", answer.co2);
        setText("run-duration", answer.duration);
        if (answer.status !== "running" || !again) {
          window.location.reload(); // the finished run (or a long one, thinned again)
          return;
        }
      } catch (error) {
        console.warn("live plot:", error);
      }
      window.setTimeout(tick, config.interval_ms);
    }
    window.setTimeout(tick, config.interval_ms);
  }

  function start() {
    setupCompare();
    setupLive();
    setupFacets();
    setupRun();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
