// The dashboard's only script: select-all checkboxes, and pages that refresh themselves.
// Everything works without it (forms post, pages reload by hand).
"use strict";

function picks(form) {
  return Array.from(form.querySelectorAll('input[type=checkbox][name="id"], input[type=checkbox][name="job_id"]'));
}

function showCount(form) {
  const count = form.querySelector("[data-selected-count]");
  if (count) count.textContent = String(picks(form).filter((box) => box.checked).length);
}

document.addEventListener("change", (event) => {
  const box = event.target;
  if (!(box instanceof HTMLInputElement) || !box.form) return;
  if (box.hasAttribute("data-select-all")) {
    for (const pick of picks(box.form)) pick.checked = box.checked;
  }
  showCount(box.form);
});

// A page whose <main> has data-refresh="N" reloads its content every N seconds, unless the
// operator is busy with it (something selected or focused) or the tab is hidden.
function busy(main) {
  if (main.querySelector("input[type=checkbox]:checked")) return true;
  const focused = document.activeElement;
  return focused !== null && focused !== document.body && main.contains(focused) &&
    ["INPUT", "SELECT", "TEXTAREA"].includes(focused.tagName);
}

async function refresh(main) {
  if (document.hidden || busy(main)) return;
  try {
    const answer = await fetch(window.location.href, { credentials: "same-origin" });
    const page = new DOMParser().parseFromString(await answer.text(), "text/html");
    const fresh = page.getElementById("content");
    if (fresh && !busy(main)) {
      main.innerHTML = fresh.innerHTML;
      main.removeAttribute("data-stale");
    }
  } catch (error) {
    main.setAttribute("data-stale", "the dashboard does not answer");
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const main = document.getElementById("content");
  const seconds = main ? Number(main.getAttribute("data-refresh")) : 0;
  if (main && seconds > 0) window.setInterval(() => refresh(main), seconds * 1000);
});
