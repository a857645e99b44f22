// Clicks on the candidate cards, label chips, object rows, gallery rows and proposal chips ->
// Python events.
// Runs as `js_on_load` of each of those HTML components; the markup (from ui/render.py) tags
// clickable things with data-event and their payload with data-index / data-id / data-action.
// Event names must appear literally here: Gradio finds custom events by scanning this code.

element.addEventListener("click", (e) => {
  const target = e.target.closest("[data-event]");
  if (!target || !element.contains(target)) return;
  e.preventDefault();
  e.stopPropagation();
  const { event, index, id, action } = target.dataset;
  if (event === "pick") trigger("pick", { index: Number(index) });
  else if (event === "choose") trigger("choose", { id: Number(id) });
  else if (event === "act") trigger("act", { id: Number(id), action });
  else if (event === "open") trigger("open", { id: Number(id) });
  else if (event === "toggle") trigger("toggle", { index: Number(index) });
});

// A long project gallery keeps the open image in view after each re-render.
new MutationObserver(() => {
  const current = element.querySelector(".sam-gallery .sam-current");
  if (current) current.scrollIntoView({ block: "nearest" });
}).observe(element, { childList: true, subtree: true });
