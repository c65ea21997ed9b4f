// Inside the Airflow UI (same origin, in its iframe) copy the UI's theme class and follow its changes.
(function () {
  function apply() {
    try {
      var ui = window.parent && window.parent !== window ? window.parent.document.documentElement : null;
      var mode = ui && ui.classList.contains('dark') ? 'dark' : ui && ui.classList.contains('light') ? 'light' : null;
      if (!mode) { var saved = window.localStorage.getItem('theme'); if (saved === 'dark' || saved === 'light') mode = saved; }
      var root = document.documentElement;
      root.classList.remove('dark', 'light');
      if (mode) root.classList.add(mode);
      return ui;
    } catch (e) { return null; }
  }
  var ui = apply();
  if (ui && window.MutationObserver) {
    new MutationObserver(apply).observe(ui, { attributes: true, attributeFilter: ['class'] });
  }
})();
