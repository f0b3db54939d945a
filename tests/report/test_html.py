"""The HTML report as a browser shows it: headless Chromium renders it, and its DOM and pixels are checked."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from lmi.report import load_report
from lmi.report.html import LATENCY_COLOURS, PALETTE, render_html
from tests.report.browser import chromium, dump_dom, screenshot
from tests.report.sample import MODELS, day_of, sample_calls, today, write_ledger


class Elements(HTMLParser):
    """Every start tag with its attributes and the id of the <svg> it sits in."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str], str | None]] = []
        self._svg: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {key: value or "" for key, value in attrs}
        if tag == "svg":
            self._svg = attributes.get("id")
        self.found.append((tag, attributes, self._svg))

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._svg = None

    def bars(self, chart: str) -> list[dict[str, str]]:
        return [
            a for tag, a, svg in self.found if tag == "rect" and svg == chart and "bar" in a.get("class", "")
        ]


def parse(markup: str) -> Elements:
    elements = Elements()
    elements.feed(markup)
    return elements


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    ledger = folder / "costs.sqlite"
    write_ledger(ledger, sample_calls(), today())
    target = folder / "report.html"
    target.write_text(render_html(load_report(ledger)), encoding="utf-8")
    return target


def test_the_page_fetches_nothing(page: Path) -> None:
    markup = page.read_text()
    assert not re.search(r"""(src|href)\s*=|url\(|@import|https?:|//[a-z]""", markup, re.IGNORECASE)
    assert "<script" not in markup.lower()


def test_rendered_dom_holds_every_chart_mark(page: Path, tmp_path: Path) -> None:
    start, calls = today(), sample_calls()
    billed = [c for c in calls if c.error is None]
    dom = parse(dump_dom(page, tmp_path / "profile"))

    spend = dom.bars("spend-chart")
    expected: dict[tuple[str, str], float] = {}
    for c in billed:
        key = (day_of(c, start), c.model)
        expected[key] = expected.get(key, 0.0) + c.cost
    assert {(b["data-category"], b["data-series"]): float(b["data-usd"]) for b in spend} == expected
    assert len(spend) == len(expected)

    tokens = dom.bars("tokens-chart")
    assert {b["data-series"] for b in tokens} == {"input", "cached input", "output"}
    assert sum(float(b["data-tokens"]) for b in tokens) == sum(
        c.usage.prompt_tokens + c.usage.completion_tokens for c in billed
    )

    latency = dom.bars("latency-chart")
    assert len(latency) == 3 * len(MODELS)
    assert {b["data-category"] for b in latency} == set(MODELS)

    errors = dom.bars("errors-chart")
    assert sorted(float(b["data-count"]) for b in errors) == [2.0, 3.0]

    tags = [tag for tag, _, _ in dom.found]
    assert "b" not in tags  # a model named "<b>local & model</b>" is shown as text, not markup
    assert "script" not in tags


def test_screenshot_shows_the_charts(page: Path, tmp_path: Path) -> None:
    image = screenshot(page, tmp_path / "report.png", 900, 2400)[..., :3]
    assert image.shape[:2] == (2400, 900)
    pixels = image.reshape(-1, 3)
    background = np.bincount(
        (pixels[:, 0].astype(np.int64) << 16) | (pixels[:, 1].astype(np.int64) << 8) | pixels[:, 2]
    ).argmax()
    not_background = (
        (pixels[:, 0].astype(np.int64) << 16) | (pixels[:, 1] << 8) | pixels[:, 2]
    ) != background
    assert not_background.mean() > 0.2, "the page is (nearly) blank"

    def painted(colour: str) -> int:
        rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.uint8)
        return int(np.all(pixels == rgb, axis=1).sum())

    for colour in (*PALETTE[: len(MODELS)], *LATENCY_COLOURS.values()):
        assert painted(colour) > 200, f"no bar painted in {colour}"


def test_an_empty_report_page_says_so(tmp_path: Path) -> None:
    chromium()
    ledger = tmp_path / "empty.sqlite"
    write_ledger(ledger, [], today())
    target = tmp_path / "empty.html"
    target.write_text(render_html(load_report(ledger)), encoding="utf-8")
    dom = parse(dump_dom(target, tmp_path / "profile"))
    assert any(attributes.get("id") == "no-calls" for _, attributes, _ in dom.found)
    assert not any(tag == "svg" for tag, _, _ in dom.found)
