// The report's only script: a pager for timelines with more lanes than
// fit one page. Without it (or when printing) every lane shows.
"use strict";
(function () {
  for (const run of document.querySelectorAll(".tl-run")) {
    const pages = Number(run.dataset.pages || "1");
    if (pages <= 1) continue;
    const lanes = run.querySelectorAll(".lane");
    const bar = document.createElement("div");
    bar.className = "pager";
    const prev = document.createElement("button");
    const next = document.createElement("button");
    const label = document.createElement("span");
    prev.type = next.type = "button";
    prev.textContent = "‹ previous sessions";
    next.textContent = "next sessions ›";
    bar.append(prev, label, next);
    run.insertBefore(bar, run.querySelector(".tl-lanes"));
    let page = 0;
    const show = () => {
      for (const l of lanes) l.classList.toggle("off", Number(l.dataset.page) !== page);
      const shown = run.querySelectorAll(".lane:not(.off)");
      const first = shown.length ? shown[0].dataset.session : "-";
      const last = shown.length ? shown[shown.length - 1].dataset.session : "-";
      const stride = Number(run.dataset.stride || "1");
      label.textContent = "page " + (page + 1) + " of " + pages + ": " + shown.length + " lanes, sessions " + first + " to " + last +
        (stride > 1 ? " (a lane = every " + stride + (stride === 2 ? "nd" : stride === 3 ? "rd" : "th") + " session)" : "");
      prev.disabled = page === 0;
      next.disabled = page === pages - 1;
    };
    prev.addEventListener("click", () => { page = Math.max(0, page - 1); show(); });
    next.addEventListener("click", () => { page = Math.min(pages - 1, page + 1); show(); });
    show();
  }
})();

// Tick labels from the pixel width: every k-th label, k the smallest
// that leaves at least 8 px between labels, so they never run together;
// the first and last always show. Without the script (or in print) the
// stylesheet's rule hides every other label on narrow screens.
(function () {
  const space = () => {
    for (const plot of document.querySelectorAll(".tl-axis .tl-plot")) {
      const ticks = [...plot.querySelectorAll(".tick")];
      for (const t of ticks) t.classList.remove("odd", "crowded");
      if (ticks.length < 3) continue;
      const rects = ticks.map((t) => t.getBoundingClientRect());
      const last = ticks.length - 1;
      for (let k = 1; k <= last; k++) {
        const shown = [];
        for (let i = 0; i < last; i += k) shown.push(i);
        // The last label shows; a label too close to it gives way.
        while (shown.length > 1 && rects[shown[shown.length - 1]].right + 8 > rects[last].left) shown.pop();
        shown.push(last);
        let fits = true;
        for (let j = 1; j < shown.length; j++) {
          if (rects[shown[j]].left < rects[shown[j - 1]].right + 8) fits = false;
        }
        if (!fits && k < last) continue;
        ticks.forEach((t, i) => t.classList.toggle("crowded", !shown.includes(i)));
        break;
      }
    }
  };
  space();
  window.addEventListener("resize", space);
})();
