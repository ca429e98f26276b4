"""``orchestrator.report_page``: the HTML of a report, from a run record made by hand (milliseconds)."""

from __future__ import annotations

import re

from orchestrator.report_inputs import ReportRun
from orchestrator.report_page import write_html


def _run(tmp_path) -> ReportRun:
    manifest = {
        "seed": 3,
        "backend": "local",
        "n_points": 40,
        "target_rounds": 2,
        "modules": {
            "module001_vae": {"kind": "vae", "config": {"latent_dim": 4, "epochs": 2, "lr": 0.1}},
            "module002_gmm": {"kind": "gmm", "config": {"n_components": 10}},
        },
        "rounds": [
            {"round": 0, "accuracy": 0.5, "seconds": {"module001_vae": 1.0, "module002_gmm": 0.25}},
            {"round": 1, "accuracy": None, "seconds": {"module001_vae": 2.0}},
        ],
        "updates": [],
    }
    return ReportRun(tmp_path, manifest, {"vae": "module001_vae", "gmm": "module002_gmm"}, {"module001_vae": 1})


def test_page_holds_the_rounds_modules_notes_and_figures(tmp_path) -> None:
    index = tmp_path / "index.html"
    figures = [("loss", tmp_path / "loss.png", "The <loss> curve")]
    write_html(index, _run(tmp_path), "my data", [0.5, None], " computed here.", figures, ["a note & more"])
    page = index.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.endswith("</body></html>\n")
    rows = re.findall(r"<tr><td>(\d+)</td><td class=\"acc\">([^<]*)</td>(.*?)</tr>", page)
    assert [(r[0], r[1]) for r in rows] == [("1", "0.5000"), ("2", "—")]
    assert "<td>1.00</td><td>0.25</td><td>1.25</td>" in rows[0][2]
    assert "<td>2.00</td><td>—</td><td>2.00</td>" in rows[1][2]
    # only modules with a completed round are listed, with the config keys shown for their kind
    assert "<code>module001_vae</code> (vae): latent_dim = 4, epochs = 2</li>" in page
    assert "module002_gmm</code>" not in page
    assert "<li>a note &amp; more</li>" in page
    assert '<figure id="loss"><img src="loss.png" alt="loss"><figcaption>The &lt;loss&gt; curve</figcaption>' in page
    assert "data: my data; 40 points" in page and "2 round(s) completed of 2" in page
