// Links into the UI: through an anchor in the parent's document, which the iframe's sandbox does
// not restrict (a same-origin parent); a plain link when the page is not in a frame.
document.addEventListener('click', function (ev) {
  var a = ev.target && ev.target.closest ? ev.target.closest('a[data-ui-link]') : null;
  if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  if (!window.parent || window.parent === window) return;
  try {
    var doc = window.parent.document;
    var link = doc.createElement('a');
    link.href = a.href;
    doc.body.appendChild(link);
    ev.preventDefault();
    link.click();
    link.remove();
  } catch (e) { /* another origin: the link opens inside the frame */ }
});

// Times: <time datetime="ISO"> rendered in the UI's timezone (the UI's own localStorage choice).
(function () {
  var zone = null;
  try { var saved = window.localStorage.getItem('timezone'); if (saved) zone = JSON.parse(saved); } catch (e) {}
  if (typeof zone !== 'string' || !zone) zone = null;
  var format;
  try {
    format = new Intl.DateTimeFormat('sv-SE', { timeZone: zone || undefined, year: 'numeric', month: '2-digit',
      day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', timeZoneName: 'short' });
  } catch (e) {  // not a zone this browser knows: the browser's own
    zone = null;
    format = new Intl.DateTimeFormat('sv-SE', { year: 'numeric', month: '2-digit', day: '2-digit',
      hour: '2-digit', minute: '2-digit', second: '2-digit', timeZoneName: 'short' });
  }
  // The zone as the user picked it (ICU may resolve an alias: Asia/Kolkata is Asia/Calcutta).
  var zoneName = zone || format.resolvedOptions().timeZone;
  document.querySelectorAll('time[datetime]').forEach(function (t) {
    var when = new Date(t.getAttribute('datetime'));
    if (isNaN(when.getTime())) return;
    t.textContent = format.format(when);
    t.title = t.getAttribute('datetime');
  });
  document.querySelectorAll('[data-timezone]').forEach(function (el) { el.textContent = zoneName; });
})();
