#!/usr/bin/env python3
"""End-to-end test of the web UI in headless Chromium (Debian `chromium` + `chromium-driver`).

Usage: ui_e2e.py BASE_URL API_KEY SCREENSHOT_DIR XSS_TRACE_ID
Run by crates/vigil/tests/it/ui.rs against a server seeded with `vigil demo` and the shared fixtures.
Prints one line per check; exits non-zero on the first failure. Screenshots of every page are saved.
"""
import json
import os
import sys
import time
import urllib.parse

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

BASE, KEY, SHOTS, XSS_TRACE = sys.argv[1:5]
os.makedirs(SHOTS, exist_ok=True)


def browser():
    opts = Options()
    opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1500,1000", "--force-color-profile=srgb"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")), options=opts)


d = browser()
wait = WebDriverWait(d, 15)


def check(name, cond, detail=""):
    if not cond:
        shot(f"FAILED-{name}")
        print(f"FAIL {name}: {detail}", flush=True)
        d.quit()
        sys.exit(1)
    print(f"ok   {name}", flush=True)


def shot(name):
    d.save_screenshot(os.path.join(SHOTS, f"{name}.png"))


def path():
    return urllib.parse.urlparse(d.current_url).path


try:
    # Unauthenticated: every page sends the browser to the login form, and shows no data.
    d.get(BASE + "/ui/traces")
    check("unauthenticated request is refused", path() == "/login" and not d.find_elements(By.CSS_SELECTOR, "table"),
          d.current_url)
    shot("01-login")
    def log_in_with_key(key):
        field = d.find_element(By.NAME, "key")
        field.send_keys(key)
        field.find_element(By.XPATH, "./ancestor::form//button[@type='submit']").click()

    log_in_with_key("vk_" + "x" * 40)
    # Wait for the answer page (the click returns before the browser has loaded it).
    try:
        wait.until(lambda drv: "not accepted" in drv.page_source)
    except Exception:
        pass
    check("a wrong key is rejected", path() == "/login" and "not accepted" in d.page_source)
    log_in_with_key(KEY)
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "table.traces tbody tr")))
    rows = d.find_elements(By.CSS_SELECTOR, "table.traces tbody tr")
    check("traces page lists traces after login", path() == "/ui/traces" and len(rows) >= 10, f"{len(rows)} rows")
    shot("02-traces")

    # Filter by model through the picker: the URL carries the filter, every row uses the model.
    model_select = Select(d.find_element(By.NAME, "model"))
    models = [o.get_attribute("value") for o in model_select.options if o.get_attribute("value")]
    check("model picker offers the models seen", len(models) >= 2, models)
    model = "gpt-4o-mini" if "gpt-4o-mini" in models else models[0]
    model_select.select_by_value(model)
    wait.until(lambda drv: "model=" in drv.current_url)
    rows = d.find_elements(By.CSS_SELECTOR, "table.traces tbody tr")
    subs = [r.find_element(By.CSS_SELECTOR, "td.name .sub").text for r in rows]
    check("filter by model is in the URL and applied", len(rows) > 0 and all(model in s for s in subs),
          f"{len(rows)} rows, {subs[:3]}")
    shot("03-traces-filtered")

    # Sorting by cost and paging keep the filter.
    d.find_element(By.LINK_TEXT, "Cost").click()
    wait.until(lambda drv: "sort=cost" in drv.current_url)
    check("sorting keeps the filter", "model=" in d.current_url)

    # Keyboard: j selects the first row, Enter opens it.
    d.get(BASE + "/ui/traces?range=all&model=" + urllib.parse.quote(model))
    body = d.find_element(By.TAG_NAME, "body")
    body.send_keys("j")
    body.send_keys(Keys.ENTER)
    wait.until(lambda drv: drv.current_url.split("?")[0].rsplit("/", 2)[-2] == "traces")
    check("j + Enter opens a trace", path().startswith("/ui/traces/"))

    # A trace with a tool span: select it and read its arguments.
    d.get(BASE + "/ui/traces?range=all&tool=" + urllib.parse.quote("lookup_order"))
    links = d.find_elements(By.CSS_SELECTOR, "table.traces tbody tr td.name a")
    if not links:
        d.get(BASE + "/ui/traces?range=all")
        links = d.find_elements(By.CSS_SELECTOR, "table.traces tbody tr td.name a")
    links[0].click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "table.waterfall tr.span-row")))
    spans = d.find_elements(By.CSS_SELECTOR, "table.waterfall tr.span-row")
    bars = d.find_elements(By.CSS_SELECTOR, "table.waterfall .bar")
    check("trace page draws a waterfall", len(spans) >= 2 and len(bars) == len(spans), f"{len(spans)} spans")
    tool_rows = [r for r in spans if r.find_element(By.CSS_SELECTOR, ".kind").text == "TOOL"]
    check("the trace has a tool span", len(tool_rows) >= 1)
    tool_rows[0].find_element(By.CSS_SELECTOR, "a.span-link").click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#detail pre.args")))
    args = d.find_element(By.CSS_SELECTOR, "#detail pre.args").text
    try:
        parsed = json.loads(args)
    except ValueError:
        parsed = None
    check("selecting the tool span shows its arguments as JSON", isinstance(parsed, dict) and len(parsed) > 0, args[:200])
    check("the URL deep-links the selected span", "span=" in d.current_url)
    deep = d.current_url
    shot("04-trace-tool-span")
    d.get(deep)
    check("a deep link opens with that span selected",
          d.find_element(By.CSS_SELECTOR, "#detail pre.args").text == args)
    check("slowest step is marked", len(d.find_elements(By.CSS_SELECTOR, "table.waterfall .mark.slow")) == 1)

    # A flagged trace explains its flag.
    d.get(BASE + "/ui/traces?range=all&flags=silent_tool_failure")
    flagged = d.find_elements(By.CSS_SELECTOR, "table.traces tbody tr td.name a")
    check("flag filter finds silently failing tool calls", len(flagged) >= 1)
    flagged[0].click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".flag-explain")))
    check("the flagged span is selected and explained", "silent tool failure" in d.find_element(By.CSS_SELECTOR, ".flag-explain").text)
    shot("05-trace-flagged")

    # Sessions: list, length breakdown, one session as a conversation.
    d.get(BASE + "/ui/sessions?range=all")
    rows = d.find_elements(By.CSS_SELECTOR, "table.list[data-list] tbody tr")
    check("sessions are listed", len(rows) >= 3, len(rows))
    check("sessions break down by length", len(d.find_elements(By.CSS_SELECTOR, ".breakdown tr[data-length]")) >= 2)
    shot("06-sessions")
    rows[0].find_element(By.CSS_SELECTOR, "td.name a").click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".timeline .turn")))
    turns = d.find_elements(By.CSS_SELECTOR, ".timeline .turn")
    msgs = d.find_elements(By.CSS_SELECTOR, ".timeline .msg")
    check("a session reads as a conversation of turns", len(turns) >= 1 and len(msgs) >= 1, f"{len(turns)} turns, {len(msgs)} messages")
    shot("07-session")

    # Dashboard: real charts with data.
    d.get(BASE + "/ui/dashboard?range=30d")
    charts = d.find_elements(By.CSS_SELECTOR, "figure.chart")
    drawn = [c for c in charts if c.find_elements(By.CSS_SELECTOR, "svg polyline")]
    check("dashboard renders charts with data", len(charts) >= 6 and len(drawn) >= 5, f"{len(drawn)}/{len(charts)} drawn")
    points = d.find_elements(By.CSS_SELECTOR, "figure.chart circle.pt")
    check("charts plot points", len(points) >= 10, len(points))
    check("top costly traces, slowest steps and failing tools are shown",
          all(t in d.page_source for t in ("Most expensive traces", "Slowest steps", "Most failing tools")))
    shot("08-dashboard")
    d.find_element(By.CSS_SELECTOR, "[data-theme-toggle]").click()
    check("theme switches", d.find_element(By.TAG_NAME, "html").get_attribute("data-theme") in ("dark", "light"))
    shot("09-dashboard-other-theme")
    d.find_element(By.CSS_SELECTOR, "[data-theme-toggle]").click()

    # Models & cost: prices used, unpriced models with how to add a price.
    d.get(BASE + "/ui/models?range=all")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "table.list tbody tr")))
    rows = d.find_elements(By.CSS_SELECTOR, "table.list tbody tr")
    check("models page shows spend and prices", "Price used" in d.page_source and len(rows) >= 3,
          f"{d.current_url}: {len(rows)} rows; {d.find_element(By.TAG_NAME, 'main').text[:300]}")
    check("unpriced models say how to add a price", "[[prices]]" in d.page_source)
    shot("10-models")

    # Injection: a span named and filled with <script> is shown as text and never runs.
    d.get(BASE + f"/ui/traces/{XSS_TRACE}")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "table.waterfall")))
    check("span content with <script> is escaped, not run",
          d.execute_script("return window.__vigil_xss === undefined") and "<script>window.__vigil_xss" in d.find_element(By.TAG_NAME, "main").text)
    shot("11-xss")

    # Quality and annotation pages: reachable from the keyboard, honest about permissions.
    d.find_element(By.TAG_NAME, "body").send_keys("g", "q")
    wait.until(lambda drv: path() == "/ui/quality")
    check("quality page shows failure modes, candidates and evaluators",
          "Candidate failure modes" in d.page_source and "Save evaluator" in d.page_source)
    shot("12-quality")
    d.get(BASE + "/ui/annotate")
    check("annotating with a read-only key is refused with a reason", "approve" in d.find_element(By.TAG_NAME, "main").text)
    print("all browser checks passed", flush=True)
finally:
    d.quit()
