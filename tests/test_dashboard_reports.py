"""performance_report and the HTML plots of get_task_stream and profile."""
import html.parser
import json
import os
import time

import pytest

import trioflow
from trioflow import Client, LocalCluster, performance_report


def spin(x):
    deadline = time.perf_counter() + 0.05
    while time.perf_counter() < deadline:
        pass
    return x + 1


def combine(a, b):
    return a + b


class _Checker(html.parser.HTMLParser):
    """Collects tags and the report's data; fails on unbalanced tags."""

    VOID = {"meta", "link", "br", "img", "input", "hr"}

    def __init__(self):
        super().__init__()
        self.open, self.tags, self.data_json, self._in_data = [], set(), None, False

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag not in self.VOID:
            self.open.append(tag)
        self._in_data = tag == "script" and ("id", "report-data") in attrs

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()
        self._in_data = False

    def handle_data(self, data):
        if self._in_data:
            self.data_json = json.loads(data)


def _check_html(text):
    checker = _Checker()
    checker.feed(text)
    checker.close()
    assert not checker.open, f"unclosed tags {checker.open}"
    assert {"html", "body", "canvas", "script", "style"} <= checker.tags
    assert "src=" not in text and "href=\"http" not in text, "the file must need no network"
    return checker.data_json


@pytest.fixture
def client(check_leaks):
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as c:
        yield c


def test_performance_report_writes_one_self_contained_file(client, tmp_path):
    path = tmp_path / "report.html"
    assert trioflow.performance_report is performance_report
    with performance_report(filename=str(path)):
        leaves = client.map(spin, range(12), pure=False)
        total = client.submit(combine, leaves[0], leaves[1])
        assert total.result() == 3
        client.gather(leaves)
    data = _check_html(path.read_text())
    prefixes = {bar[3] for bar in data["stream"]["bars"]}
    assert prefixes == {"spin", "combine"}
    assert data["progress"]["spin"][2] == 12 and data["progress"]["combine"][2] == 1
    assert data["profile"]["count"] > 0  # 12 x 50 ms of spinning, sampled every 10 ms
    assert "performance_report(filename" in path.read_text()  # the block's code


def test_task_stream_plot_and_save(client, tmp_path):
    client.gather(client.map(spin, range(4), pure=False))
    records, document = client.get_task_stream(plot=True)
    assert len(records) == 4
    assert {bar[3] for bar in _check_html(document)["stream"]["bars"]} == {"spin"}
    target = tmp_path / "stream.html"
    records, document = client.get_task_stream(plot="save", filename=str(target))
    assert target.read_text() == document
    with pytest.raises(ValueError, match="plot must be"):
        client.get_task_stream(plot="png")


def test_profile_filename_writes_html(client, tmp_path):
    client.gather(client.map(spin, range(6), pure=False))
    target = tmp_path / "profile.html"
    tree, document = client.profile(filename=str(target))
    assert os.path.exists(target) and target.read_text() == document
    assert _check_html(document)["profile"]["count"] == tree["count"] > 0
