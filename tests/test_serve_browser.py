"""``ipassr serve`` as a person uses it: a real server process, driven by headless Chromium
(Debian's chromium + chromium-driver, through Selenium) and by four clients at once.

Skipped, with how to install them, where Chromium or the web extra is missing; CI installs both
(.ci/run).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from conftest import ASSETS

MPO = ASSETS / "media" / "sugarshack.mpo"
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
MISSING: list[str] = []
try:
    import gradio_client  # noqa: F401
    import selenium  # noqa: F401
except ImportError:
    MISSING.append("pip install -e '.[test]' (gradio, selenium)")
if not (CHROMIUM and DRIVER):
    MISSING.append("apt-get install -y chromium chromium-driver")
pytestmark = pytest.mark.skipif(bool(MISSING), reason="browser tests need " + " and ".join(MISSING))
X4 = "iPASSR x4 (shipped weights)"
# --max-memory of the server under test: the 3DS photo's 160x120 LR pair runs whole under it,
# keeping every row's maps (under 128 MiB it ran in bands, ~2.7x slower), the 128x96 pairs in ~40 MiB
BUDGET = 256 * 2 ** 20
STARTUP = 600  # s: importing torch and Gradio on a loaded machine is slow; a hang still fails


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``ipassr serve`` on a free loopback port, queue of one waiting pair; yields (url, process)."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "ipassr", "serve", "--port", str(port),
                                    "--max-memory", str(BUDGET), "--queue-size", "1"],
                                   stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + STARTUP
    while True:
        assert process.poll() is None, log.read_text()
        try:
            urllib.request.urlopen(url, timeout=5).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "server did not start: " + log.read_text()
            time.sleep(0.5)
    yield url, process, temporary_folder(log)
    process.terminate()
    assert process.wait(timeout=60) == 0, log.read_text()
    assert "ipassr serve: stopped" in log.read_text()
    assert not Path(temporary_folder(log)).exists()  # the server cleaned up after itself


def temporary_folder(log: Path) -> str:
    """The server's own temporary folder, as it announced it."""
    return re.search(r"temporary files in (\S+),", log.read_text()).group(1)


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def wait_for(driver, condition, timeout: float = 900):
    """Wait until ``condition(driver)`` is truthy (a generous ceiling: a hang still fails)."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.3).until(condition)


def text_of(driver, element_id: str) -> str:
    return driver.find_element("css selector", f"#{element_id}").text


def requested_hosts(driver) -> set[str]:
    """Every host the page asked for anything (Chromium's network log)."""
    hosts = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if not url.startswith(("data:", "blob:")):
                hosts.add(re.sub(r"^\w+://([^/:]+).*", r"\1", url))
    return hosts


def choose(driver, element_id: str, value: str) -> None:
    """Pick ``value`` in a Gradio dropdown as a person does: open it, click the option."""
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element("css selector", f"#{element_id} input")
    box.click()
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(value)
    box.send_keys(Keys.ENTER)
    wait_for(driver, lambda d: box.get_attribute("value") == value, 30)


def download(url: str, href: str, folder: Path) -> Path:
    path = folder / href.rsplit("/", 1)[-1]
    with urllib.request.urlopen(urllib.request.Request(href if "://" in href else url + href)) as r:
        path.write_bytes(r.read())
    return path


def test_a_person_super_resolves_an_mpo_and_explores_the_matches(server, browser, tmp_path):
    """Upload the 3DS photo in known-answer mode at x4, wait, download: the SR pair equals
    ``ipassr infer`` on the LR pair the page made (also downloaded); click a left pixel: the ring
    is on the same row, at the disparity of the attention's argmax (``evaluate --attention``)."""
    import ipassr
    from ipassr.cli import main
    from ipassr.data.io import read_image
    from ipassr.data.media import read_stereo
    from ipassr.data.resize import degrade, mod_crop
    from ipassr.evaluation.correspondence import attention_details

    url, _, temp = server
    browser.get(url)
    wait_for(browser, lambda d: d.find_elements("css selector", "#run"), 120)
    browser.find_element("css selector", "#stereo-file input[type=file]").send_keys(str(MPO))
    choose(browser, "network", X4)
    browser.find_element("css selector", "#known input[type=checkbox]").click()
    wait_for(browser, lambda d: d.find_elements("css selector", "#stereo-file .file-preview"), 60)
    browser.find_element("css selector", "#run").click()
    status = wait_for(browser, lambda d: re.search(r"(Done|Could not|Internal).*",
                                                   text_of(d, "status")))
    assert status.group(1) == "Done", status.group(0)
    assert "Known answer" in status.group(0) and "PSNR" in status.group(0)

    links = {a.get_attribute("href").rsplit("/", 1)[-1]: a.get_attribute("href")
             for a in browser.find_elements("css selector", "#downloads a[href]")}
    served = [a.get_attribute("href") for a in browser.find_elements("css selector", "a[href]")
              if "file=" in a.get_attribute("href")]  # the upload and every download
    assert served and all(href.split("file=", 1)[1].startswith(temp + "/") for href in served)
    files = {name: download(url, href, tmp_path) for name, href in links.items()}
    assert set(files) == {"sugarshack_x4_left.png", "sugarshack_x4_right.png",
                          "sugarshack_x4_sbs.png", "sugarshack_x4.mpo",
                          "sugarshack_lr_left.png", "sugarshack_lr_right.png"}
    photo = read_stereo(MPO)
    lr = [read_image(files[f"sugarshack_lr_{v}.png"]) for v in ("left", "right")]
    for made, view in zip(lr, (photo.left, photo.right)):
        assert np.array_equal(made, degrade(mod_crop(view, 4), 4))  # MATLAB bicubic, exactly
    assert main(["infer", "--weights", "x4", "--left", str(files["sugarshack_lr_left.png"]),
                 "--right", str(files["sugarshack_lr_right.png"]), "--output-left",
                 str(tmp_path / "infer_L.png"), "--output-right", str(tmp_path / "infer_R.png")]) == 0
    for view, side in (("left", "L"), ("right", "R")):
        page = read_image(files[f"sugarshack_x4_{view}.png"]).astype(int)
        cli = read_image(tmp_path / f"infer_{side}.png").astype(int)
        assert np.abs(page - cli).max() <= 1

    # the pixel to click: a confident, clearly matched one away from the borders
    details = attention_details(ipassr.load_model(scale=4), *lr)
    peak = details.peak_left[0, 0].numpy()
    y, x = np.unravel_index(np.argmax(peak[30:90, 40:120]), (60, 80))
    y, x = int(y) + 30, int(x) + 40
    argmax_disparity = int(round(-float(details.peak_offset_left[0, 0, y, x])))
    image = browser.find_element("css selector", "#explorer-left img")
    wait_for(browser, lambda d: image.get_attribute("naturalWidth") not in (None, "0"), 60)
    natural = int(image.get_attribute("naturalWidth"))
    scale = image.size["width"] / natural
    k = natural // 160  # the page shows the LR view enlarged k times
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(browser).move_to_element_with_offset(
        image, ((x + 0.5) * k * scale) - image.size["width"] / 2,
        ((y + 0.5) * k * scale) - image.size["height"] / 2).click().perform()
    said = wait_for(browser, lambda d: re.search(
        r"Left pixel \((\d+), (\d+)\): its peak in the right view is pixel \((\d+), (\d+)\).*"
        r"disparity is (-?\d+) LR px", text_of(d, "explorer-text")), 300)
    clicked_x, clicked_y, peak_x, peak_y, disparity = map(int, said.groups())
    assert (clicked_x, clicked_y) == (x, y)
    assert peak_y == clicked_y and disparity == clicked_x - peak_x == argmax_disparity
    assert browser.find_elements("css selector", "#explorer-right img")
    assert requested_hosts(browser) == {"127.0.0.1"}  # nothing fetched from anywhere else
    height = browser.execute_script("window.scrollTo(0, 0); return document.body.scrollHeight")
    browser.set_window_size(1400, height + 240)
    browser.save_screenshot(str(tmp_path / "serve.png"))
    assert (tmp_path / "serve.png").stat().st_size > 0


def test_four_requests_at_once_are_answered_or_told_busy(server, tmp_path):
    """Four clients at once against a queue of one waiting pair: each is answered or told the
    server is busy, the server's peak memory over that burst stays within --max-memory, and it
    still serves afterwards."""
    from gradio_client import Client, handle_file

    from ipassr.data.io import write_image
    from ipassr.data.media import read_stereo

    url, process, _ = server
    photo = read_stereo(MPO)
    for view, name in ((photo.left, "l.png"), (photo.right, "r.png")):
        write_image(tmp_path / name, view[200:296, 240:368])  # a 128x96 LR pair
    arguments = (None, handle_file(tmp_path / "l.png"), handle_file(tmp_path / "r.png"),
                 "from the file", X4, False)
    client = Client(url, verbose=False, download_files=str(tmp_path / "client"))
    assert client.predict(*arguments, api_name="/super_resolve")[0].startswith("**Done")
    notes = tmp_path / "notes.png"
    notes.write_text("a text file renamed .png")
    said = client.predict(handle_file(notes), None, None, "from the file", X4, False,
                          api_name="/super_resolve")[0]
    assert said.startswith("**Could not super-resolve:** notes.png: not a picture ipassr reads")
    assert "\n" not in said and str(tmp_path) not in said
    for path in ("/etc/passwd", str(Path(__file__).resolve())):  # nothing outside its folder
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"{url}gradio_api/file={path}")
        assert caught.value.code in (403, 404)
    status = Path(f"/proc/{process.pid}/status")
    Path(f"/proc/{process.pid}/clear_refs").write_text("5")  # restart the peak-RSS count
    before = int(re.search(r"VmRSS:\s+(\d+)", status.read_text()).group(1)) * 1024
    outcomes: list[str] = []
    start = threading.Barrier(4)

    def ask() -> None:
        start.wait()
        try:
            outcomes.append(client.predict(*arguments, api_name="/super_resolve")[0])
        except Exception as exc:  # noqa: BLE001 - the busy answer arrives as the client's error
            outcomes.append(f"refused: {exc}")

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    peak = int(re.search(r"VmHWM:\s+(\d+)", status.read_text()).group(1)) * 1024
    answered = [o for o in outcomes if o.startswith("**Done")]
    busy = [o for o in outcomes if "Queue is full" in o]
    assert len(answered) + len(busy) == 4, outcomes
    assert answered and busy  # one runs, one waits, the rest are turned away
    assert peak - before <= BUDGET
    assert process.poll() is None
    assert client.predict(*arguments, api_name="/super_resolve")[0].startswith("**Done")
