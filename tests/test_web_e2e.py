"""The review UI end to end, in Debian's headless Chromium driven by Playwright: a simulated line
runs, a quality engineer opens the UI, filters the rejects, opens one, logs in, records a
disposition and finds it persisted. Screenshots go to test-artifacts/ui/ for a person to look at.
"""

import csv
import io
import re
import shutil
import threading
import time
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from playwright.sync_api import expect, sync_playwright

from gateway.app import Gateway
from gateway.review import Filters, ReviewIndex
from gateway.sources.simulator import DEFECTS

from .conftest import line_config

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "ui"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As root in a container, with no network beyond loopback: no sandbox, nothing in the background.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "line-1-quality"


@pytest.fixture
def browser(tmp_path):
    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: ./dev test installs it"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def running_line(tmp_path):
    """A simulated line with many defects, its review UI on a free port; inspects in the background
    until the test ends."""
    config = line_config(
        tmp_path,
        **{
            "mqtt.enabled": False,
            "source.simulator.rate_ppm": 1200,
            "source.simulator.seed": 11,
            "source.simulator.defects": {d: 0.05 for d in DEFECTS},
            "plc.simulator.speed_mm_s": 1000,
            "rejects.keep_passes_every": 10,
            "web.users": [{"name": "anna", "password_hash": PasswordHasher().hash(PASSWORD)}],
        },
    )
    gateway = Gateway(config)
    gateway.start()
    stop = threading.Event()
    line = threading.Thread(target=gateway.run, args=(stop,), name="line")
    line.start()
    yield gateway
    stop.set()
    line.join()
    assert gateway.close().rejects_failed == 0


def shot(page, name):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


def test_a_quality_engineer_reviews_a_reject(running_line, browser):
    gateway = running_line
    url = gateway.endpoints.web
    index = ReviewIndex(gateway.config.line.data_dir)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    failures = []
    page.on("pageerror", lambda error: failures.append(str(error)))

    # Live status: the counters move on their own (the page refreshes from /api/status).
    page.goto(url)
    items = page.locator("#items")
    expect(items).not_to_have_text("0", timeout=20_000)
    first_count = int(items.inner_text())
    expect(items).not_to_have_text(str(first_count), timeout=10_000)
    expect(page.locator("#latest li a").first).to_be_visible(timeout=20_000)
    shot(page, "1-line-status")

    # Wait for enough rejects of one reason to filter on.
    reason = "wrong_lot"
    deadline = time.monotonic() + 60
    while index.search(Filters(reason=reason)).total < 2:
        assert time.monotonic() < deadline, f"the line stored fewer than 2 {reason} rejects in a minute"
        time.sleep(0.5)
    page.goto(url + "rejects")
    rows = page.locator("#reject-list tbody tr[data-id]")
    expect(rows.first).to_be_visible()
    assert page.locator("#reject-list img").count() > 0  # thumbnails
    page.select_option("select[name=reason]", reason)
    page.click("#apply")
    expect(page).to_have_url(re.compile(r"reason=wrong_lot"))
    count = rows.count()
    assert count >= 2
    for i in range(count):
        assert reason in rows.nth(i).locator("td").nth(4).inner_text()
    total = int(page.locator("#count").inner_text().split()[0])
    assert total >= count
    shot(page, "2-rejects-filtered")

    # The newest wrong_lot reject in detail: reasons, grade report, pictures that load.
    item_id = int(rows.first.get_attribute("data-id"))
    rows.first.locator("td").nth(1).locator("a").click()
    expect(page).to_have_url(f"{url}rejects/{item_id}")
    expect(page.locator("#reasons")).to_contain_text("wrong_lot")
    expect(page.locator("#reasons")).to_contain_text("lot")
    expect(page.locator("#grade-report")).to_contain_text("SC")
    for picture in ("#overlay", "#crop", "#frame"):
        expect(page.locator(picture)).to_be_visible()
        assert page.eval_on_selector(picture, "img => img.complete && img.naturalWidth > 0"), picture
    shot(page, "3-reject-detail")

    # A disposition needs a login: a wrong password is refused, the right one returns to the item.
    page.click("#disposition-login")
    page.fill("input[name=user]", "anna")
    page.fill("input[name=password]", "not-the-password")
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_contain_text("wrong user name or password")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{url}rejects/{item_id}")
    expect(page.locator("#user")).to_contain_text("anna")

    comment = "lot ribbon from the previous order still loaded — 上一批次色带"
    page.check("input[value=false_reject]")
    page.fill("textarea[name=comment]", comment)
    page.click("#disposition-form button[type=submit]")
    expect(page.locator("#saved")).to_be_visible()
    page.reload()
    expect(page.locator("#disposition-current")).to_contain_text("false reject")
    expect(page.locator("#disposition-current")).to_contain_text("anna")
    expect(page.locator("#disposition-current")).to_contain_text(comment)
    shot(page, "4-disposition-saved")

    # Persisted in the store, found again by the list's disposition filter.
    detail = index.get(item_id)
    assert detail.item.disposition.disposition == "false_reject"
    assert (detail.history[-1].user, detail.history[-1].comment) == ("anna", comment)
    assert [i.id for i in index.search(Filters(disposition="false_reject")).items] == [item_id]
    page.goto(url + "rejects?disposition=false_reject")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("false reject")

    # Exports of today: the PDF and the CSV download, the CSV carries the disposition.
    page.goto(url + "export")
    with page.expect_download() as download:
        page.click("button[formaction='/report.pdf']")
    assert Path(download.value.path()).read_bytes().startswith(b"%PDF")
    with page.expect_download() as download:
        page.click("button[formaction='/export.csv']")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8-sig"))))
    assert [(r["item_id"], r["disposition_by"]) for r in rows if r["disposition"]] == [
        (str(detail.item.item_id), "anna")
    ]
    page.click("button[formaction='/report']")
    expect(page.locator("h1")).to_have_text("Reject report")
    expect(page.locator("#by-disposition")).to_contain_text("false reject")
    shot(page, "5-report")

    # Trends: one chart per graded measure.
    page.goto(url + "trends?period=1h")
    expect(page.locator("#chart-overall svg")).to_be_visible()
    assert page.locator("figure.chart svg").count() >= 5
    shot(page, "6-trends")
    assert failures == []
