// The live view: the newest annotated frame at the gate's preview.fps, the panel and tuning once a second.
"use strict";

let pageFps = 3;
let shownIndex = null, shownSince = Date.now();  // the frame on screen, and since when it has not changed
const $ = (id) => document.getElementById(id);

function text(id, value) { $(id).textContent = value; }
function percent(share) { return share === null || share === undefined ? "–" : `${Math.round(share * 100)} %`; }
function stopped(message) { const e = $("error"); e.textContent = message; e.hidden = false; }

async function nextFrame() {
  try {
    const response = await fetch("frame.jpg", { cache: "no-store", credentials: "same-origin" });
    if (response.status === 401) { stopped("This page needs the preview token: open /?token=… once."); return; }
    if (response.status === 200) {
      const index = response.headers.get("X-Frame-Index"), faces = response.headers.get("X-Faces");
      const url = URL.createObjectURL(await response.blob());
      const img = $("frame");
      img.onload = () => {
        URL.revokeObjectURL(url);
        document.body.dataset.frame = index;  // what is on screen now (the browser test waits on these)
        document.body.dataset.faces = faces;
        if (index !== shownIndex) { shownIndex = index; shownSince = Date.now(); }
        const still = (Date.now() - shownSince) / 1000;
        text("frame-info", still > 2 ? `frame ${index}: no new frame for ${still.toFixed(0)} s (camera stalled, or the gate in a fault)`
                                     : `frame ${index}, ${faces} face(s) passed on`);
      };
      img.src = url;
    }
  } catch (error) {
    text("frame-info", "the gate does not answer (stopped?)");
  }
  setTimeout(nextFrame, 1000 / pageFps);
}

function showDecisions(decisions) {
  const list = $("decisions");
  list.replaceChildren();
  for (const d of decisions) {
    const item = document.createElement("li");
    item.className = d.verdict;
    const faces = d.faces.map((f) => `#${f.track_id ?? "?"} ${f.label} ${f.confidence?.toFixed(2) ?? ""}`).join(", ");
    const time = d.time.slice(11, 19);
    item.textContent = `${time} ${d.verdict.toUpperCase()} ${d.reason} (relay ${d.relay})${faces ? ": " + faces : ""}`;
    list.append(item);
  }
  if (!decisions.length) { const none = document.createElement("li"); none.className = "none"; none.textContent = "none yet"; list.append(none); }
}

function showHistogram(tuning) {
  const box = $("histogram"), h = tuning.histogram, bins = h.passed.length;
  const totals = h.passed.map((n, i) => n + h.under_min_size[i] + h.outside_roi[i]);
  const top = Math.max(1, ...totals);
  box.replaceChildren();
  for (let i = 0; i < bins; i++) {
    const bin = document.createElement("div");
    bin.className = "bin";
    bin.title = `${i * h.bin_px}${i === bins - 1 ? "+" : "–" + ((i + 1) * h.bin_px)} px: ${totals[i]} face(s)`;
    for (const kind of ["passed", "under_min_size", "outside_roi"]) {
      const bar = document.createElement("span");
      bar.className = kind;
      bar.style.height = `${(100 * h[kind][i]) / top}%`;
      bin.append(bar);
    }
    if (i % 2 === 0) { const label = document.createElement("span"); label.className = "label"; label.textContent = i * h.bin_px; bin.append(label); }
    box.append(bin);
  }
  const marker = document.createElement("div");
  marker.className = "min-size";
  marker.title = `detector.min_face_px = ${tuning.min_face_px}`;
  marker.style.left = `${(100 * Math.min(tuning.min_face_px / (h.bin_px * bins), 1))}%`;
  box.append(marker);
}

function showTuning(tuning) {
  text("shares", `A face was passed on in ${percent(tuning.share_frames_with_face)} of ${tuning.frames} frames; ` +
    `of ${tuning.faces_found} faces found, ${percent(tuning.share_under_min_size)} were under detector.min_face_px (${tuning.min_face_px} px) ` +
    `and ${percent(tuning.share_outside_roi)} outside detector.roi [${tuning.roi.join(", ")}].`);
  showHistogram(tuning);
  const list = $("advice");
  list.replaceChildren();
  for (const a of tuning.advice) {
    const item = document.createElement("li"), key = document.createElement("code");
    key.textContent = `${a.key} = ${JSON.stringify(a.value)}`;
    item.append(key, `: ${a.text}`);
    list.append(item);
  }
}

async function refreshPanel() {
  try {
    const response = await fetch("status.json", { cache: "no-store", credentials: "same-origin" });
    if (response.status === 401) { stopped("This page needs the preview token: open /?token=… once."); return; }
    const s = await response.json();
    pageFps = s.page_fps;
    text("gate-id", s.gate_id);
    const door = $("door");
    door.textContent = s.door;
    door.className = `door door-${s.door}`;
    text("camera-fps", `${s.camera_fps.toFixed(1)} frames/s`);
    for (const stage of ["detect", "classify", "policy"]) text(`${stage}-ms`, s.stage_ms[stage] === undefined ? "–" : `${s.stage_ms[stage].toFixed(1)} ms`);
    showDecisions(s.decisions);
    showTuning(s.tuning);
    text("opened", s.opened.length ? "Opened by " + s.opened.map((o) => `${o.by} at ${o.time}`).join("; ") : "");
  } catch (error) {
    text("frame-info", "the gate does not answer (stopped?)");
  }
  setTimeout(refreshPanel, 1000);
}

nextFrame();
refreshPanel();
