"""report.html in a real headless browser (Debian's chromium): it loads without console errors, its figures
are visible, and its table sorts. `.ci/run` installs chromium and requires these tests to run."""
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

from sim.sweeps.plan import plan
from sim.sweeps.sweep import sweep

from .conftest import scenario_dict

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if not CHROMIUM and not os.environ.get("SERVESIM_REQUIRE_BROWSER"):
    pytest.skip("no chromium (apt install chromium); .ci/run installs it", allow_module_level=True)

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def browse(tmp_path, url: str, *extra) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
                           "--virtual-time-budget=3000", *extra, url], capture_output=True, text=True, timeout=120)


def console_errors(stderr: str) -> list[str]:
    """Lines where the page's own script failed or logged an error (chromium prints them as CONSOLE)."""
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


class Rows(HTMLParser):
    """Collects the cells of the table with id 'points' from a dumped DOM."""

    def __init__(self):
        super().__init__()
        self.rows, self.inside, self.sorted, self.cell = [], False, None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id") == "points":
            self.inside, self.sorted = True, a.get("data-sorted")
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag in ("td", "th"):
            self.cell = a.get("data-v", "")
            self.rows[-1].append(self.cell)

    def handle_data(self, data):
        if self.inside and self.cell == "" and self.rows and self.rows[-1]:
            self.rows[-1][-1] = data.strip()
            self.cell = None

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = False


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    p = tmp / "s.yaml"
    import yaml
    p.write_text(yaml.safe_dump(scenario_dict(requests=20000, slo={"latency_p99_ms": 20},
                                              server={"batching": {"policy": "dynamic", "max_batch_size": 8,
                                                                   "max_queue_delay_ms": 1}})))
    sweep(p, ["server.batching.max_batch_size=1,2,4,8", "workload.arrival.rate_rps=100,300,500"], tmp / "sw")
    return tmp / "sw" / "report.html"


def test_the_report_is_self_contained(report):
    text = report.read_text()
    assert text.count("<svg") >= 2 and "<script>" in text and "<style>" in text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)  # nothing fetched from anywhere
    named = set(re.findall(r"https?://[^\s\"'<>]+", text))  # no outside address at all, but SVG's own xmlns ids
    assert named <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}, named


def test_the_report_loads_without_console_errors_and_the_detector_sees_one(report, tmp_path):
    proc = browse(tmp_path, report.as_uri(), "--dump-dom")
    assert proc.returncode == 0 and "<table" in proc.stdout
    assert console_errors(proc.stderr) == [], proc.stderr
    broken = tmp_path / "broken.html"
    broken.write_text("<html><body><script>undefinedFunction();</script></body></html>")
    assert console_errors(browse(tmp_path, broken.as_uri(), "--dump-dom").stderr)  # a check that can fail


def test_the_figures_are_visible(report, tmp_path):
    import matplotlib.image as mpimg

    shot = tmp_path / "shot.png"
    proc = browse(tmp_path, report.as_uri(), f"--screenshot={shot}", "--window-size=1200,1400")
    assert proc.returncode == 0 and shot.is_file(), proc.stderr
    img = mpimg.imread(shot)[..., :3]
    ink = (img.mean(axis=2) < 0.9).mean()  # share of non-white pixels
    assert ink > 0.03 and float(np.std(img)) > 0.05, (ink, float(np.std(img)))


@pytest.mark.parametrize("name", ["workload.arrival.rate_rps", "latency_s.p99"])
def test_the_table_sorts_in_the_browser(report, tmp_path, name):
    unsorted = Rows()
    unsorted.feed(report.read_text())
    column = unsorted.rows[0].index(name)
    before = [float(r[column]) for r in unsorted.rows[1:]]
    assert before != sorted(before)  # the page lists points in grid order: sorting has work to do
    proc = browse(tmp_path, report.as_uri() + f"?sort={column}", "--dump-dom")
    rows = Rows()
    rows.feed(proc.stdout)
    assert rows.sorted == f"{column}:1", rows.sorted
    values = [float(r[column]) for r in rows.rows[1:]]
    assert len(values) == 12 and values == sorted(values) and sorted(before) == values


def test_the_plan_report_renders(tmp_path):
    import yaml
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(scenario_dict(requests=60000, warmup_s=0.5, slo={"latency_p99_ms": 20},
                                              server={"batching": {"policy": "none"}},
                                              cost_model={"kind": "affine", "base_ms": 2.0, "per_item_ms": 0})))
    plan(p, ["server.replicas=1,2"], tmp_path / "pl")
    proc = browse(tmp_path, (tmp_path / "pl/report.html").as_uri(), "--dump-dom")
    assert console_errors(proc.stderr) == [] and "Largest rate per configuration" in proc.stdout
