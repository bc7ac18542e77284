// Slide viewer: OpenSeadragon with the slide and aligned overlay layers from the local tile server.
// Display controls live here (not in Streamlit) so changing them never resets zoom/pan; the last
// view is kept in sessionStorage so a reload (new Streamlit session) comes back to it.
(function () {
  "use strict";
  const slide = window.LRP_SLIDE;
  const $ = (id) => document.getElementById(id);
  const state = { map: "relevance", sign: "both", cmap: "cyan_lime", seqCmap: "viridis", opacity: 0.6, pclass: -1,
                  tissue: false, grid: false };
  const layers = { overlay: null, tissue: null, grid: null };
  const api = window.lrpViewer = { tilesLoaded: 0, tilesFailed: 0, ready: false, state: state };
  const viewKey = "lrp-view:" + slide;

  function message(text) { const m = $("message"); m.textContent = text; m.hidden = !text; }

  function tileSource(info, layer, extra) {
    const q = new URLSearchParams(Object.assign({ slide: slide, layer: layer }, extra || {}));
    return { width: info.width, height: info.height, tileSize: info.tile_size, tileOverlap: info.overlap,
             minLevel: 0, maxLevel: info.max_level,
             getTileUrl: (level, x, y) => "/tile?" + q.toString() + "&level=" + level + "&col=" + x + "&row=" + y };
  }

  function niceLength(um) {
    const p = Math.pow(10, Math.floor(Math.log10(um)));
    const f = um / p;
    return (f >= 5 ? 5 : f >= 2 ? 2 : 1) * p;
  }

  fetch("/info?slide=" + encodeURIComponent(slide)).then((r) => {
    if (!r.ok) return r.text().then((t) => { throw new Error(t); });
    return r.json();
  }).then(start).catch((e) => message("Cannot open this slide: " + e.message));

  function start(info) {
    api.info = info;
    state.cmap = info.default_cmap || state.cmap;  // the slide default, apart from the stains (docs/app.md)
    if (typeof OpenSeadragon === "undefined") {
      message("OpenSeadragon is not installed: run scripts/fetch_openseadragon.sh, then reload.");
      return;
    }
    const viewer = api.viewer = OpenSeadragon({
      id: "viewer", prefixUrl: "/vendor/openseadragon/images/", showNavigator: true,
      navigatorPosition: "TOP_RIGHT", navigatorAutoFade: false, autoHideControls: false, tileSources: tileSource(info, "slide"), maxZoomPixelRatio: 2,
      gestureSettingsMouse: { clickToZoom: false },
      drawer: "canvas",  // the WebGL drawer adds the colour of fully transparent overlay pixels (white veil)
      preserveViewport: true, visibilityRatio: 0.5, imageLoaderLimit: 6, timeout: 30000, immediateRender: true,
    });
    viewer.addHandler("tile-loaded", () => { api.tilesLoaded += 1; });
    viewer.addHandler("tile-load-failed", () => { api.tilesFailed += 1; });

    const cm = $("cmap");
    const result = info.result;
    // a MIL run: the relevance layer is each tile's evidence; attention is the second map (no probability)
    const mil = !!(result && result.kind === "mil");
    const maps = mil ? (result.has_attention ? ["relevance", "attention"] : ["relevance"]) : ["relevance", "probability"];
    if (!result) {
      for (const id of ["opacity", "map", "cmap", "tissue", "grid"]) $(id).disabled = true;
      for (const el of document.querySelectorAll("input[name=sign]")) el.disabled = true;
      message(info.result_error ? "No overlay: " + info.result_error
                                : "This slide has no relevance result yet: explain it from the page below the viewer.");
    }

    if (result && result.slide_warning) message(result.slide_warning);
    if (mil) {
      const labels = { relevance: "Evidence", attention: "Attention" };
      $("map").replaceChildren(...maps.map((m) => {
        const o = document.createElement("option");
        o.value = m;
        o.textContent = labels[m];
        return o;
      }));
    }

    // options are built as nodes, never as HTML text: class names come from result files
    function fillOptions(select, labels, values) {
      select.replaceChildren(...labels.map((label, i) => {
        const o = document.createElement("option");
        o.value = String(values[i]);
        o.textContent = String(label);
        return o;
      }));
    }

    function fillCmaps() {
      const names = Object.keys(state.map === "relevance" ? info.legend.diverging : info.legend.sequential);
      fillOptions(cm, names, names);
      cm.value = state.map === "relevance" ? state.cmap : state.seqCmap;
    }

    function legend() {
      if (!result) { $("legend").hidden = true; return; }
      const rel = state.map === "relevance";
      let stops = rel ? info.legend.diverging[state.cmap] : info.legend.sequential[state.seqCmap];
      const v = result.vmax;
      const fmt = (x) => Math.abs(x) >= 100 || (Math.abs(x) < 0.01 && x !== 0) ? x.toExponential(1) : x.toFixed(2);
      let lo = rel ? -v : 0, hi = rel ? v : 1;
      if (rel && state.sign === "positive") { stops = stops.slice(Math.floor(stops.length / 2)); lo = 0; }
      if (rel && state.sign === "negative") { stops = stops.slice(0, Math.ceil(stops.length / 2)); hi = 0; }
      $("legend-bar").style.background = "linear-gradient(to right," + stops.join(",") + ")";
      $("legend-lo").textContent = fmt(lo);
      $("legend-hi").textContent = fmt(hi);
      $("legend-title").textContent = rel ? (result.relevance_unit || "relevance") + " (0 = transparent)"
        : state.map === "attention" ? "attention, relative to the tile with the most"
        : "probability of " + ((result.classes || [])[state.pclass] ?? "class");
      // zoomed in past the stored map, the layer is each analysed tile's own map (model resolution)
      $("legend").title = rel && result.fine_from_level !== null
        ? "From Deep Zoom level " + result.fine_from_level + " on: each analysed tile's own relevance at the model's resolution"
        : "";
    }

    // Swap a layer without flicker: the new one is added, the old one removed once the new one
    // opened. A generation counter drops layers that finish opening after a newer request.
    const generation = { overlay: 0, tissue: 0, grid: 0 };
    function replaceLayer(name, source, opacity, index) {
      const gen = ++generation[name];
      if (!source) {
        if (layers[name]) viewer.world.removeItem(layers[name]);
        layers[name] = null;
        return;
      }
      viewer.addTiledImage({ tileSource: source, opacity: opacity, index: Math.min(index, viewer.world.getItemCount()),
        success: (ev) => {
          if (gen !== generation[name]) { viewer.world.removeItem(ev.item); return; }
          if (layers[name]) viewer.world.removeItem(layers[name]);
          layers[name] = ev.item;
          if (name === "overlay") ev.item.setOpacity(state.opacity);
        } });
    }

    function overlaySource() {
      if (state.map === "attention") return tileSource(info, "attention", { cmap: state.seqCmap });
      return state.map === "relevance"
        ? tileSource(info, "relevance", { mode: state.sign, cmap: state.cmap })
        : tileSource(info, "probability", { cmap: state.seqCmap, cls: state.pclass });
    }

    api.setOpacity = (v) => { state.opacity = v; $("opacity").value = Math.round(v * 100); if (layers.overlay) layers.overlay.setOpacity(v); };
    api.refreshOverlay = () => replaceLayer("overlay", overlaySource(), state.opacity, 1);

    $("opacity").addEventListener("input", (e) => api.setOpacity(e.target.value / 100));
    $("map").addEventListener("change", (e) => {
      state.map = e.target.value;
      $("sign-group").hidden = state.map !== "relevance";
      $("class-group").hidden = state.map !== "probability" || !(result.classes || []).length;
      fillCmaps(); legend(); api.refreshOverlay();
    });
    for (const el of document.querySelectorAll("input[name=sign]")) {
      el.addEventListener("change", (e) => { state.sign = e.target.value; legend(); api.refreshOverlay(); });
    }
    const classes = (result && result.classes) || [];
    fillOptions($("pclass"), classes, classes.map((c, i) => i));
    if (classes.length) { $("pclass").value = String(classes.length - 1); state.pclass = classes.length - 1; }
    $("pclass").addEventListener("change", (e) => { state.pclass = Number(e.target.value); legend(); api.refreshOverlay(); });
    cm.addEventListener("change", (e) => {
      if (state.map === "relevance") state.cmap = e.target.value; else state.seqCmap = e.target.value;
      legend(); api.refreshOverlay();
    });
    $("tissue").addEventListener("change", (e) => { state.tissue = e.target.checked;
      replaceLayer("tissue", state.tissue ? tileSource(info, "tissue") : null, 1, 2); });
    $("grid").addEventListener("change", (e) => { state.grid = e.target.checked;
      replaceLayer("grid", state.grid ? tileSource(info, "grid") : null, 1, 3); });

    // scale bar in µm
    function scalebar() {
      const item = viewer.world.getItemAt(0);
      if (!item || !info.mpp) { $("scalebar").hidden = true; return; }
      const imgPerScreen = 1 / item.viewportToImageZoom(viewer.viewport.getZoom(true));
      const umPerPx = info.mpp * imgPerScreen;
      const um = niceLength(umPerPx * 120);
      $("scalebar-bar").style.width = Math.round(um / umPerPx) + "px";
      $("scalebar-label").textContent = um >= 1000 ? (um / 1000) + " mm" : um + " µm";
    }

    // go to a tile given as #tile=x0,y0,w0,h0 (level-0 px): used by the gallery; no reload
    function gotoHash() {
      const m = /tile=(\d+),(\d+),(\d+),(\d+)/.exec(location.hash);
      const item = viewer.world.getItemAt(0);
      if (!m || !item) return false;
      const [x, y, w, h] = m.slice(1).map(Number);
      const pad = Math.max(w, h);
      viewer.viewport.fitBounds(item.imageToViewportRectangle(x - pad, y - pad, w + 2 * pad, h + 2 * pad), false);
      return true;
    }
    window.addEventListener("hashchange", gotoHash);

    viewer.addOnceHandler("open", () => {
      if (!gotoHash()) {
        try {
          const saved = JSON.parse(sessionStorage.getItem(viewKey) || "null");
          if (saved) {
            viewer.viewport.zoomTo(saved.zoom, null, true);
            viewer.viewport.panTo(new OpenSeadragon.Point(saved.x, saved.y), true);
          }
        } catch (e) { /* storage unavailable: start from home view */ }
      }
      if (result) { restoreControls(); fillCmaps(); legend(); api.refreshOverlay(); }
      scalebar();
      api.ready = true;
    });

    // display settings carry over between slides and reloads of this browser tab
    const controlsKey = "lrp-controls";
    function saveControls() {
      try { sessionStorage.setItem(controlsKey, JSON.stringify(state)); } catch (e) { /* ignore */ }
    }
    function restoreControls() {
      let saved = null;
      try { saved = JSON.parse(sessionStorage.getItem(controlsKey) || "null"); } catch (e) { return; }
      if (!saved) return;
      const pick = (v, allowed, fallback) => (allowed.includes(v) ? v : fallback);
      state.opacity = Math.min(1, Math.max(0, Number(saved.opacity ?? state.opacity)));
      state.sign = pick(saved.sign, ["both", "positive", "negative"], state.sign);
      state.map = pick(saved.map, maps, state.map);
      state.cmap = pick(saved.cmap, Object.keys(info.legend.diverging), info.default_cmap || state.cmap);
      state.seqCmap = pick(saved.seqCmap, Object.keys(info.legend.sequential), state.seqCmap);
      $("opacity").value = Math.round(state.opacity * 100);
      $("map").value = state.map;
      document.querySelector(`input[name=sign][value=${state.sign}]`).checked = true;
      $("sign-group").hidden = state.map !== "relevance";
      $("class-group").hidden = state.map !== "probability" || !(result.classes || []).length;
    }
    for (const id of ["opacity", "map", "cmap", "pclass", "tissue", "grid"]) $(id).addEventListener("change", saveControls);
    $("opacity").addEventListener("input", saveControls);
    for (const el of document.querySelectorAll("input[name=sign]")) el.addEventListener("change", saveControls);
    // a click on a tile of a MIL run: its evidence, attention and, where the run made one, its pixel map
    function showTile(t) {
      api.lastTile = t;
      if (!t.tile && t.tile !== 0) { $("tile-panel").hidden = true; return; }
      const fmt = (x) => (x >= 0 ? "+" : "") + x.toPrecision(3);
      $("tile-text").textContent = "Tile " + t.tile + " (rank " + t.rank + "): evidence " + fmt(t.evidence)
        + (t.attention === null ? "" : ", attention " + t.attention.toPrecision(3));
      const img = $("tile-img");
      if (t.pixel_map) {
        img.src = "/pixel-map?" + new URLSearchParams({ slide: slide, tile: t.tile, cmap: state.cmap }).toString();
        img.hidden = false;
        $("tile-note").textContent = "Pixel map: where in the tile its evidence lies (own colour scale).";
      } else {
        img.hidden = true;
        img.removeAttribute("src");
        $("tile-note").textContent = result.pixel_maps === 0
          ? "No pixel maps in this run: it explained features computed elsewhere (TRIDENT/CLAM) or a method "
            + "with one number per tile, so there is no tile encoder to trace the evidence into pixels."
          : "No pixel map for this tile: only the tiles of largest evidence have one (--top-tiles).";
      }
      $("tile-panel").hidden = false;
    }
    $("tile-close").addEventListener("click", () => { $("tile-panel").hidden = true; });
    viewer.addHandler("canvas-click", (ev) => {
      if (!ev.quick || !mil) return;
      const item = viewer.world.getItemAt(0);
      const p = item.viewerElementToImageCoordinates(ev.position);
      fetch("/tile-at?" + new URLSearchParams({ slide: slide, x: p.x, y: p.y }).toString())
        .then((r) => (r.ok ? r.json() : r.text().then((t) => { throw new Error(t); })))
        .then(showTile).catch((e) => message("Cannot look up the tile: " + e.message));
    });

    viewer.addHandler("animation", scalebar);
    viewer.addHandler("animation-finish", () => {
      const c = viewer.viewport.getCenter(true);
      try { sessionStorage.setItem(viewKey, JSON.stringify({ zoom: viewer.viewport.getZoom(true), x: c.x, y: c.y })); } catch (e) { /* ignore */ }
    });
    window.addEventListener("resize", scalebar);
    if (!result) $("legend").hidden = true;
  }
})();
