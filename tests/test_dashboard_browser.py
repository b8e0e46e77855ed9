"""The dashboard in a real headless Chromium (Debian's chromium and
chromedriver, which .ci/run installs): the live status page during a job,
the workers table, the task page, the info page.

Set TRIOFLOW_SCREENSHOT_DIR to keep the screenshots (docs/images holds the
ones made this way)."""
import os
import pathlib
import shutil
import threading
import time

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from _png import colour_count
from _util import wait_until
from trioflow import Client, LocalCluster

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def slow_inc(x):
    time.sleep(0.02)
    return x + 1


def pair_sum(a, b):
    time.sleep(0.01)
    return a + b


@pytest.fixture
def browser(check_leaks, tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1000",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def cluster_client(check_leaks):
    with LocalCluster(n_workers=2, threads_per_worker=2, processes=False,
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        yield client


def _screenshot(driver, name, tmp_path) -> bytes:
    png = driver.get_screenshot_as_png()
    keep = os.environ.get("TRIOFLOW_SCREENSHOT_DIR")
    pathlib.Path(keep or tmp_path, f"dashboard-{name}.png").write_bytes(png)
    return png


def _running_job(client, stop: threading.Event):
    """Keep the cluster busy until ``stop``: maps and pairwise sums (whose
    inputs sit on different workers, so there are transfers too)."""
    def run():
        while not stop.is_set():
            leaves = client.map(slow_inc, range(40), pure=False)
            sums = [client.submit(pair_sum, a, b, pure=False)
                    for a, b in zip(leaves[::2], leaves[1::2])]
            client.gather(sums)
    thread = threading.Thread(target=run, name="dashboard-test-job")
    thread.start()
    return thread


def _text(driver, css):
    # in one script: the pages redraw their elements on every update
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]))"
        ".map(function (e) { return e.textContent; }).join(' ');", css)


def _attributes(driver, css, name) -> set:
    return set(driver.execute_script(
        "var name = arguments[1]; return Array.from(document.querySelectorAll(arguments[0]))"
        ".map(function (e) { return e.getAttribute(name); });", css, name))


def test_status_page_shows_the_running_job_live(browser, cluster_client, tmp_path):
    client = cluster_client
    stop = threading.Event()
    job = _running_job(client, stop)
    try:
        browser.get(client.dashboard_link)

        def shows_job():
            legend = _attributes(browser, "#task-stream-legend [data-prefix]", "data-prefix")
            progress = _attributes(browser, "#progress [data-prefix]", "data-prefix")
            return {"slow_inc", "pair_sum"} <= legend and {"slow_inc", "pair_sum"} & progress
        try:
            wait_until(shows_job, timeout=20)
        except AssertionError:
            raise AssertionError("task stream and progress do not show the job: legend "
                                 f"{_text(browser, '#task-stream-legend')!r}, progress "
                                 f"{_text(browser, '#progress')!r}") from None
        updates = int(browser.find_element(By.TAG_NAME, "body").get_attribute("data-updates"))
        wait_until(lambda: int(browser.find_element(By.TAG_NAME, "body")
                               .get_attribute("data-updates")) >= updates + 2,
                   timeout=10, message="the page keeps updating without a reload")
        drawn = browser.execute_script("""
            var c = document.getElementById('task-stream'), ctx = c.getContext('2d');
            var d = ctx.getImageData(0, 0, c.width, c.height).data, n = 0;
            for (var i = 0; i < d.length; i += 4)
              if (d[i] < 230 || d[i + 1] < 230 || d[i + 2] < 230) n++;
            return n;""")
        assert drawn > 500, "the task stream canvas has almost nothing drawn on it"
        for address in client.scheduler_info()["workers"]:
            assert address in _text(browser, "#memory") and address in _text(browser, "#processing")
        png = _screenshot(browser, "status", tmp_path)
        assert colour_count(png) > 20, "the screenshot is blank"
    finally:
        stop.set()
        job.join(30)


def test_workers_page_lists_every_worker(browser, cluster_client, tmp_path):
    client = cluster_client
    held = client.map(slow_inc, range(8))  # held: the table shows them in memory
    client.gather(held)
    browser.get(client.dashboard_link.replace("/status", "/workers"))
    expected = set(client.scheduler_info()["workers"])

    wait_until(lambda: _attributes(browser, "#workers-body tr", "data-address") == expected, timeout=15, message=f"rows for {expected}")
    for address in expected:
        assert address in _text(browser, "#workers-body")
    png = _screenshot(browser, "workers", tmp_path)
    assert colour_count(png) > 5


def test_task_page_shows_state_dependencies_and_holder(browser, cluster_client, tmp_path):
    client = cluster_client
    a = client.submit(slow_inc, 1, key="slow_inc-a")
    b = client.submit(pair_sum, a, 2, key="pair_sum-b")
    b.result()
    holder = client.who_has([b])["pair_sum-b"][0]
    browser.get(client.dashboard_link.replace("/status", "/task/pair_sum-b"))
    wait_until(lambda: _text(browser, "#task-state") == "memory", timeout=15,
               message="the task page shows the state")
    assert "slow_inc-a" in _text(browser, "#task-deps")
    assert holder in _text(browser, "#task-who-has")
    _screenshot(browser, "task", tmp_path)


def test_info_page_names_scheduler_and_workers(browser, cluster_client, tmp_path):
    client = cluster_client
    browser.get(client.dashboard_link.replace("/status", "/info"))
    text = _text(browser, "main")
    assert client.scheduler_address in text
    for address in client.scheduler_info()["workers"]:
        assert address in text
    _screenshot(browser, "info", tmp_path)
