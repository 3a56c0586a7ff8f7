// theme.js runs before the first paint (a classic script in <head>) so the
// page never flashes the wrong theme: it applies the choice saved by the toggle.
(function () {
  try {
    var t = localStorage.getItem("medic-theme");
    if (t === "light" || t === "dark") document.documentElement.setAttribute("data-theme", t);
  } catch (e) { /* storage disabled: follow the system */ }
})();
