"""Benchmark the app as a user meets it: the real server, driven by Debian's Chromium.

    python scripts/bench_ui.py --json bench/runs/ui_runN.json [--weights weights] [--data ../shared/iu-xray]

Starts `streamlit run app.py` on a free port (a fresh prediction log and run log in a
temporary folder, the given weights), drives it with Playwright, and writes one JSON object:

- ``first_prediction_s``: server start -> first result on screen (page load, upload, Predict),
  with the browser already open, as a user's is; ``first_prediction_steps`` says when the
  server answered, the page was drawn and Predict was clicked;
- ``click_to_probabilities_p50_s`` / ``_p95_s`` (and ``_max_s``): Predict click -> the decisions
  and probabilities of *that* study drawn (its result container, ui.prediction_view.result_marker,
  with every bar of its chart labelled), over ``--predictions`` warm predictions of different
  real IU studies with their reports; ``click_to_idle_*``: click -> the page has finished;
- ``attribution_s``: "head/method" -> seconds from the Explain click to the drawn result;
- ``batch_page_studies_per_s``: a zip of ``--batch`` studies (+ a CSV of their reports), Score
  click -> "Scored and logged N studies";
- ``page_load_s``: page -> seconds from navigation to the page drawn and idle (warm server);
- ``external_requests``: every request the browser made to a host other than the app's own.

Needs /usr/bin/chromium (or $CXR_E2E_CHROMIUM) and the playwright package. Exits 2 with
one line when something it needs is missing.
"""
from __future__ import annotations

import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from scripts._cli import Parser, fail, pct, run_main
from scripts._server import free_port, healthy, stop
from ui.prediction_view import RESULT_MARKER  # the page's marker this script waits for

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("CXR_E2E_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PAGES = {"Predict": "", "Batch review": "batch_review", "PACS": "pacs", "Site validation": "site_validation",
         "Model card": "model_card", "Training monitor": "training_monitor"}
# app.py's pages (PACS: its form, no server configured; Site validation: its form, no result)
ATTRIBUTIONS = (("fusion", "gradcam"), ("fusion", "ig"), ("image", "gradcam"), ("image", "ig"), ("text", "ig"))
TIMEOUT_MS = 120_000


def parse_args(argv=None):
    p = Parser(description=__doc__.splitlines()[0])
    p.add_weights_and_data(dataset=False)  # the browser uploads Open-I PNGs
    p.add_argument("--json", required=True, dest="json_out")
    p.add_argument("--predictions", type=int, default=20, help="warm predictions timed")
    p.add_argument("--batch", type=int, default=50, help="studies in the batch zip")
    p.add_argument("--shots", default=None, help="folder for a screenshot of each step (optional)")
    return p.parse_args(argv)


def studies(data: Path, n: int) -> list[tuple[Path, str]]:
    """n real studies: (frontal PNG, FINDINGS + IMPRESSION), in a fixed order."""
    from core.data.reports import parse_report
    png = data / "NLMCXR_png"
    out = []
    for xml in sorted((data / "NLMCXR_reports" / "ecgen-radiology").glob("*.xml"), key=lambda p: (len(p.stem), p.stem)):
        report = parse_report(xml)
        images = [png / f"{i}.png" for i in report.image_ids if (png / f"{i}.png").is_file()]
        text = report.text("report")
        if images and text:
            out.append((images[0], text))
        if len(out) == n:
            return out
    fail(f"only {len(out)} studies with an image and a report in {data}; need {n}")


class Bench:
    def __init__(self, page, url: str, shots: Path | None):
        self.page, self.url, self.shots = page, url, shots

    def shot(self, name: str) -> None:
        if self.shots:
            self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)

    def idle(self, timeout: int = TIMEOUT_MS) -> None:
        """No script run in progress, as a user sees it before the next click: the app says its
        script is not running and Streamlit's status widget ('Running…') has gone. The status
        widget alone appears only after a delay, so a short rerun (a radio click) could still be
        running when the next click went out; that click then waited behind it and its wait was
        counted against the next step (0.8 s on the image-head Grad-CAM)."""
        self.page.wait_for_timeout(100)
        self.page.wait_for_function(
            """() => {
                 const app = document.querySelector('[data-testid=stApp]');
                 return app && app.getAttribute('data-test-script-state') === 'notRunning'
                   && !document.querySelector('[data-testid=stStatusWidget]');
               }""", timeout=timeout, polling=25)

    def goto(self, path: str) -> float:
        t = time.perf_counter()
        self.page.goto(f"{self.url}/{path}", timeout=TIMEOUT_MS)
        self.page.wait_for_selector("h1", timeout=TIMEOUT_MS)
        self.idle()
        return time.perf_counter() - t

    def shown_result(self) -> str:
        """The result whose decisions are on screen ('' when none): the middle of its container's key."""
        return self.page.evaluate(
            """(prefix) => {
                 const re = new RegExp('^st-key-' + prefix + '_(.+)_([0-9]+)$');
                 for (const box of document.querySelectorAll(`[class*="st-key-${prefix}_"]`)) {
                   const m = [...box.classList].map(c => c.match(re)).find(Boolean);
                   if (m) return m[1];
                 }
                 return '';
               }""", RESULT_MARKER)

    def predict(self, image: Path, text: str) -> tuple[float, float]:
        """Upload, report mode, text, Predict. Returns (click -> probabilities, click -> idle)."""
        page = self.page
        before = self.shown_result()
        page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(image))
        self.idle()
        page.get_by_test_id("stRadio").get_by_text("Report — report QA").click()
        self.idle()
        box = page.get_by_test_id("stTextArea").locator("textarea")
        box.fill(text)
        box.press("Tab")
        self.idle()
        t = time.perf_counter()
        page.get_by_role("button", name="Predict", exact=True).click()
        # the new result's decisions drawn: the page wraps them in a container keyed
        # <RESULT_MARKER>_<result>_<bars> (ui.prediction_view.result_marker); wait for one of another
        # result than before, and for its chart to have drawn as many value labels as it has bars
        page.wait_for_function(
            """([prefix, before]) => {
                 const re = new RegExp('^st-key-' + prefix + '_(.+)_([0-9]+)$');
                 for (const box of document.querySelectorAll(`[class*="st-key-${prefix}_"]`)) {
                   if (box.closest('[data-stale=true]')) continue;
                   const m = [...box.classList].map(c => c.match(re)).find(Boolean);
                   if (!m || m[1] === before) continue;
                   const bars = Number(m[2]);
                   if (bars === 0) return true;  // nothing assessed with a number: the tables are the result
                   const chart = box.querySelector('[data-testid=stPlotlyChart]');
                   return !!chart && chart.querySelectorAll('g.textpoint text').length === bars;
                 }
                 return false;
               }""", arg=[RESULT_MARKER, before], timeout=TIMEOUT_MS, polling=10)
        shown = time.perf_counter() - t
        self.idle()
        return shown, time.perf_counter() - t

    def attribution(self, head: str, method: str) -> float:
        page = self.page
        radios = page.get_by_test_id("stRadio")
        radios.filter(has_text="Head").get_by_text(head, exact=True).click()
        self.idle()
        method_radio = radios.filter(has_text="Method")
        if method_radio.count():
            method_radio.locator("label").filter(has_text={"gradcam": "Grad-CAM", "ig": "Integrated"}[method]).click()
            self.idle()
        t = time.perf_counter()
        page.get_by_role("button", name="Explain", exact=True).click()
        # polled every 10 ms like a prediction's result: a locator's wait_for polls more slowly and
        # added up to 0.3 s after the result was already drawn
        page.wait_for_function(
            """() => !!document.querySelector('[data-testid=stException]')
                 || [...document.querySelectorAll('[data-testid=stCaptionContainer]')]
                      .some(e => e.innerText.includes('Computed in'))""", timeout=TIMEOUT_MS, polling=10)
        took = time.perf_counter() - t
        if page.get_by_test_id("stException").count():
            return None  # the app showed a traceback
        self.idle()
        return took

    def batch(self, items: list[tuple[Path, str]]) -> float:
        buf, csv_rows = io.BytesIO(), ["file,text,mode"]
        with zipfile.ZipFile(buf, "w") as zf:
            for image, text in items:
                zf.write(image, image.name)
                csv_rows.append(f'{image.name},"{text.replace(chr(34), chr(39))}",report')
        page = self.page
        page.get_by_test_id("stFileUploaderDropzoneInput").first.set_input_files(
            files=[{"name": "studies.zip", "mimeType": "application/zip", "buffer": buf.getvalue()}])
        self.idle()
        page.get_by_test_id("stFileUploaderDropzoneInput").nth(1).set_input_files(
            files=[{"name": "reports.csv", "mimeType": "text/csv", "buffer": "\n".join(csv_rows).encode()}])
        self.idle()
        t = time.perf_counter()
        page.get_by_role("button", name="Score", exact=True).click()
        page.get_by_text(f"Scored and logged {len(items)} studies").wait_for(timeout=300_000)
        took = time.perf_counter() - t
        self.idle()
        return took


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args) -> dict:
    if not CHROMIUM.is_file():
        fail(f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set CXR_E2E_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        fail("the playwright package is not installed (pip install playwright)")
    weights, data = Path(args.weights), Path(args.data)
    if not (weights / "model.safetensors").is_file():
        fail(f"no model in {weights}")
    pool = studies(data, max(args.predictions + 1, args.batch))
    shots = Path(args.shots) if args.shots else None
    if shots:
        shots.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench_ui_"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "CXR_WEIGHTS": str(weights.resolve()), "CXR_DB_PATH": str(tmp / "predictions.db"),
           "CXR_RUNLOG": str(tmp / "runs.db"), "CXR_SHARE_STATUS": str(tmp / "share.json")}
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"]
    out: dict = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                             "load_avg_start": os.getloadavg()[0]}}
    external: list[str] = []
    log = (tmp / "server.log").open("wb")
    with sync_playwright() as pw:
        # the browser is up before the server starts, as a user's is: its own start-up (seconds of
        # CPU here) is not part of the app's first prediction
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("request", lambda r: external.append(r.url)
                if not r.url.startswith((url, "data:", "blob:", "about:")) else None)
        t_start = time.perf_counter()
        server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            while not healthy(url):
                if server.poll() is not None:
                    fail(f"the server exited with code {server.returncode}; see {tmp / 'server.log'}")
                if time.perf_counter() - t_start > 120:
                    fail("the server did not answer within 120 s")
                time.sleep(0.1)
            steps = {"server_answers_s": round(time.perf_counter() - t_start, 3)}
            b = Bench(page, url, shots)
            b.goto("")
            steps["page_drawn_s"] = round(time.perf_counter() - t_start, 3)
            first = b.predict(*pool[0])
            out["first_prediction_s"] = round(time.perf_counter() - t_start, 3)
            steps["predict_clicked_s"] = round(out["first_prediction_s"] - first[0], 3)
            out["first_prediction_steps"] = steps
            out["first_click_to_probabilities_s"] = round(first[0], 3)
            note(f"first prediction {out['first_prediction_s']} s")
            b.shot("predict_first")
            shown, idle = [], []
            for image, text in pool[1:args.predictions + 1]:
                s, i = b.predict(image, text)
                shown.append(s)
                idle.append(i)
                note(f"prediction {len(shown)}: {s:.2f} s to probabilities, {i:.2f} s to idle")
            b.shot("predict_last")
            out.update({"click_to_probabilities_p50_s": round(statistics.median(shown), 3),
                        "click_to_probabilities_p95_s": round(pct(shown, 95), 3),
                        "click_to_probabilities_max_s": round(max(shown), 3),
                        "click_to_idle_p50_s": round(statistics.median(idle), 3),
                        "click_to_idle_p95_s": round(pct(idle, 95), 3),
                        "click_to_idle_max_s": round(max(idle), 3),
                        "predictions": len(shown)})
            attributions = {}
            for head, method in ATTRIBUTIONS:
                took = b.attribution(head, method)
                attributions[f"{head}/{method}"] = None if took is None else round(took, 3)
                b.shot(f"attribution_{head}_{method}")
                note(f"attribution {head}/{method}: {took}")
            out["attribution_s"] = attributions
            b.goto(PAGES["Batch review"])
            try:
                took = b.batch(pool[:args.batch])
            except Exception:
                b.shot("batch_failed")
                raise
            note(f"batch: {args.batch} studies in {took:.1f} s")
            out["batch_studies"] = args.batch
            out["batch_seconds"] = round(took, 3)
            out["batch_page_studies_per_s"] = round(args.batch / took, 2)
            b.shot("batch")
            loads = {}
            for name, path in PAGES.items():
                b.goto(path)  # warm the page's imports once
                loads[name] = round(statistics.median(b.goto(path) for _ in range(3)), 3)
                b.shot(f"page_{path or 'predict'}")
            out["page_load_s"] = loads
            browser.close()
        finally:
            stop(server)
            log.close()
    out["external_requests"] = sorted(set(external))
    out["machine"]["load_avg_end"] = os.getloadavg()[0]
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    result = run(args)
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    run_main(main)
