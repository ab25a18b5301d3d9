// Keyboard use of every page: the rows of the console's tables and the timeline's items take the
// focus (one Tab stop per list, a roving tabindex), ArrowUp/ArrowDown/Home/End move through
// them, Enter opens the row (its first link, or its own click); `/` focuses the page's search
// field (or opens the search page). The waterfall has its own keys (waterfall.js).

// A tbody marked data-keys="own" (the virtualized log table, logs.js) moves its focus itself.
const LISTS = "table.grid > tbody:not([data-keys=own]), ol.events-list";
const ROW = "table.grid > tbody:not([data-keys=own]) > tr, ol.events-list > li";

// Every row of a list focusable by script, exactly one of them by Tab.
function mark(list) {
  let stop = null;
  for (const row of list.children) {
    if (!row.hasAttribute("tabindex")) row.tabIndex = -1;
    else if (row.tabIndex === 0) {
      if (stop) row.tabIndex = -1;
      else stop = row;
    }
  }
  if (!stop && list.firstElementChild) list.firstElementChild.tabIndex = 0;
}

function moveTo(from, to) {
  if (!to) return;
  from.tabIndex = -1;
  to.tabIndex = 0;
  to.focus();
}

function typing(el) {
  return el.closest("input, select, textarea, [contenteditable], dialog");
}

function searchField() {
  return document.querySelector("#app input[type=search], #app .search-form input");
}

function focusSearch() {
  const field = searchField();
  if (field) return field.focus();
  location.hash = "#/search";
  const until = performance.now() + 3000;
  const wait = () => {
    const f = searchField();
    if (f) f.focus();
    else if (performance.now() < until) requestAnimationFrame(wait);
  };
  requestAnimationFrame(wait);
}

export function enableKeys(root) {
  new MutationObserver((records) => {
    const lists = new Set();
    for (const rec of records) {
      if (rec.target.classList.contains("wf-inner")) continue; // the waterfall has its own keys
      if (rec.target.matches(LISTS)) lists.add(rec.target);
      for (const n of rec.addedNodes) {
        if (n.nodeType !== 1) continue;
        if (n.matches(LISTS)) lists.add(n);
        for (const l of n.querySelectorAll(LISTS)) lists.add(l);
      }
    }
    for (const l of lists) mark(l);
  }).observe(root, { childList: true, subtree: true });
  root.addEventListener("focusin", (e) => {
    const row = e.target.matches(ROW) ? e.target : null;
    if (!row || row.tabIndex === 0) return;
    for (const r of row.parentElement.children) if (r.tabIndex === 0) r.tabIndex = -1;
    row.tabIndex = 0;
  });
  document.addEventListener("keydown", (e) => {
    if (e.defaultPrevented || e.altKey || e.ctrlKey || e.metaKey) return;
    const t = e.target instanceof Element ? e.target : document.body;
    if (e.key === "/" && !typing(t)) {
      e.preventDefault();
      return focusSearch();
    }
    if (!t.matches(ROW)) return;
    const rows = t.parentElement;
    const to = { ArrowDown: t.nextElementSibling, ArrowUp: t.previousElementSibling, Home: rows.firstElementChild, End: rows.lastElementChild };
    if (e.key in to) {
      e.preventDefault();
      moveTo(t, to[e.key]);
    } else if (e.key === "Enter") {
      e.preventDefault();
      const link = t.querySelector("a[href]");
      if (link) link.click();
      else t.click();
    }
  });
}
