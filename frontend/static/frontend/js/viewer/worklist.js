// Worklist keyboard navigation: j/k or arrows move the selection, Enter opens, n opens the next unconfirmed scan.
const rows = [...document.querySelectorAll("#worklist tbody tr[data-id]")];
let current = 0;

function select(i) {
  if (!rows.length) return;
  current = Math.max(0, Math.min(rows.length - 1, i));
  rows.forEach((r, k) => r.classList.toggle("selected", k === current));
  rows[current].scrollIntoView({ block: "nearest" });
}

rows.forEach((r, i) => r.addEventListener("click", (e) => {
  if (e.target.closest("a")) return;
  select(i);
  location.href = r.dataset.url;
}));

document.addEventListener("keydown", (e) => {
  if (e.target.closest("input, select, textarea")) return;
  if (e.key === "j" || e.key === "ArrowDown") { select(current + 1); e.preventDefault(); }
  else if (e.key === "k" || e.key === "ArrowUp") { select(current - 1); e.preventDefault(); }
  else if (e.key === "Enter" && rows.length) { location.href = rows[current].dataset.url; }
  else if (e.key === "n") {
    const next = document.getElementById("next-unconfirmed");
    if (next) location.href = next.href;
  }
});
select(0);

// Filters apply as soon as a choice changes.
document.querySelectorAll("#filters select").forEach((s) => s.addEventListener("change", () => s.form.submit()));
