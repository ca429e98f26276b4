"""The HTML page of a run's report: a summary, the rounds table, the notes and the figures."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from orchestrator import checkpoint
from orchestrator.report_inputs import ReportRun

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.7em; text-align: right; }
th { background: #f3f3f3; } td.text, th.text { text-align: left; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.92em; color: #444; max-width: 60em; } .notes li { color: #8a4b00; }
"""


def _cell(value: Any, fmt: str = "") -> str:
    return "<td>—</td>" if value is None else f"<td>{html.escape(format(value, fmt))}</td>"


def _rounds_table(rounds: list[dict[str, Any]], accuracy: list[float | None], modules: list[str]) -> str:
    head = "".join(f"<th>{html.escape(m)} (s)</th>" for m in modules)
    rows = []
    for i, entry in enumerate(rounds):
        secs = entry.get("seconds", {})
        acc = accuracy[i] if i < len(accuracy) else None
        total = sum(float(v) for v in secs.values()) if secs else None
        acc_cell = '<td class="acc">—</td>' if acc is None else f'<td class="acc">{acc:.4f}</td>'
        rows.append(
            f"<tr><td>{int(entry.get('round', i)) + 1}</td>{acc_cell}"
            + "".join(_cell(secs.get(m), ".2f") for m in modules)
            + _cell(total, ".2f")
            + "</tr>"
        )
    return (
        f'<table id="rounds"><thead><tr><th>round</th><th>accuracy</th>{head}<th>total (s)</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _config_line(manifest: dict[str, Any], name: str) -> str:
    entry = manifest["modules"].get(name, {})
    cfg = entry.get("config", {}) if isinstance(entry, dict) else {}
    keys = {
        "vae": ("latent_dim", "epochs", "batch_size", "hidden"),
        "gmm": ("n_components", "n_sweeps"),
        "mm": ("message", "counts", "alpha"),
    }
    shown = ", ".join(f"{k} = {cfg[k]}" for k in keys.get(entry.get("kind", ""), ()) if k in cfg)
    kind = html.escape(str(entry.get("kind", "?")))
    detail = ": " + html.escape(shown) if shown else ""
    return f"<li><code>{html.escape(name)}</code> ({kind}){detail}</li>"


def write_html(
    path: Path,
    run: ReportRun,
    source: str,
    accuracy: list[float | None],
    acc_note: str,
    figures: list[tuple[str, Path, str]],
    notes: list[str],
) -> None:
    """Write the page at ``path``: the run's summary, its rounds, the notes and the figures with their captions."""
    m = run.manifest
    rounds = m.get("rounds", [])
    modules = sorted({k for r in rounds for k in r.get("seconds", {})})
    title = f"serket-ray report: {run.out.name}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<ul>",
        f"<li>run directory: <code>{html.escape(str(run.out.resolve()))}</code></li>",
        f"<li>data: {html.escape(source)}; {m.get('n_points', '?')} points</li>",
        f"<li>seed {html.escape(str(m.get('seed')))}, backend {html.escape(str(m.get('backend', '?')))}, "
        f"{len(rounds)} round(s) completed of {html.escape(str(m.get('target_rounds', '?')))}"
        + (f", {float(m['total_seconds']):.1f} s in all" if isinstance(m.get("total_seconds"), (int, float)) else "")
        + "</li>",
        "</ul>",
        "<h2>Modules</h2><ul>",
        *(_config_line(m, name) for name in sorted(m["modules"]) if name in run.last_round),
        "</ul>",
        "<h2>Rounds</h2>",
        "<p>Accuracy: fraction of points whose GMM cluster is matched (Hungarian matching) to their label. "
        f"Seconds: wall time of each module's update.{html.escape(acc_note)}</p>",
        _rounds_table(rounds, accuracy, modules),
    ]
    if notes:
        parts += ['<h2>Notes</h2><ul class="notes">', *(f"<li>{html.escape(n)}</li>" for n in notes), "</ul>"]
    parts.append("<h2>Figures</h2>")
    for name, png, caption in figures:
        parts.append(
            f'<figure id="{name}"><img src="{html.escape(png.name)}" alt="{html.escape(name)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    parts.append("</body></html>")
    checkpoint.atomic_write_bytes(path, ("\n".join(parts) + "\n").encode())
