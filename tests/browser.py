"""Render an HTML file in Debian's headless Chromium and report what a person would see go wrong.

Not a test module: ``check_in_browser`` is called by the report tests. Where no Chromium is installed the
caller skips loudly (the reason is printed in the test summary; ``.ci/run`` installs the package)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
PROBE = """<script>
window.__laErrors = [];
window.addEventListener('error', function (e) {
  var t = e.target;
  window.__laErrors.push(t && t.tagName ? ('resource failed: ' + t.tagName + ' ' + String(t.src || t.href).slice(0, 60))
                                       : ('error: ' + e.message));
}, true);
['error', 'warn'].forEach(function (k) { var f = console[k]; console[k] = function () {
  window.__laErrors.push('console.' + k + ': ' + Array.prototype.join.call(arguments, ' ')); f.apply(console, arguments); }; });
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var out = {errors: window.__laErrors, images: imgs.length,
             broken: imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).length,
             sections: Array.prototype.map.call(document.querySelectorAll('section[data-section]'),
                                                function (s) { return s.dataset.section; }),
             missing: Array.prototype.map.call(document.querySelectorAll('section[data-section] .section-missing'),
                                               function (m) { return m.closest('section').dataset.section; })};
  var pre = document.createElement('pre'); pre.id = 'la-probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def check_in_browser(html_path: Path, screenshot: Path, timeout: int = 120) -> dict:
    """Load ``html_path`` with a probe script, return {errors, images, broken, sections, missing} as the page saw
    them after load, and save a screenshot of the top of the page."""
    exe = chromium()
    text = Path(html_path).read_text()
    with tempfile.TemporaryDirectory() as tmp:
        probed = Path(tmp) / "probed.html"
        probed.write_text(text.replace("<head>", "<head>" + PROBE, 1))
        run = [exe, *FLAGS, f"--user-data-dir={tmp}/profile", "--virtual-time-budget=15000"]
        dom = subprocess.run([*run, "--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=timeout)
        m = re.search(r'<pre id="la-probe">(.*?)</pre>', dom.stdout, re.S)
        if not m:
            raise AssertionError(f"the page never finished loading in Chromium (stderr: {dom.stderr[-500:]})")
        import html as _html

        result = json.loads(_html.unescape(m.group(1)))
        subprocess.run([*run, "--window-size=1400,2400", f"--screenshot={screenshot}", Path(html_path).as_uri()],
                       capture_output=True, timeout=timeout)
    return result
