"""The front of a search, drawn: accuracy against flash and against RAM, the budget as a line.

``front.png`` is matplotlib (Agg, no version stamp). ``front.html`` is one
self-contained page: the same two panels as SVG where every point names its
trial and recipe on hover and links to the trial's ``report.md``, and the
trial table; no script or network needed.
"""

from __future__ import annotations

import html
from pathlib import Path

PANELS = (("flash_bytes", "flash_budget_bytes", "flash (bytes)"), ("ram_bytes", "ram_budget_bytes", "RAM (bytes)"))
STYLE = {"front": ("#cc3311", "front"), "ok": ("#4477aa", "fits"), "infeasible": ("#999999", "over budget")}


def _points(res, key: str) -> dict[str, list]:
    out: dict[str, list] = {k: [] for k in STYLE}
    for r in res.rows:
        if r.fig(key) is None or r.fig("accuracy") is None or r.status not in ("ok", "infeasible"):
            continue
        kind = "front" if r.on_front else r.status
        out[kind].append(r)
    return out


def front_png(res, path: Path) -> bool:
    """Write the PNG; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, (key, budget_attr, label) in zip(axes, PANELS):
        pts = _points(res, key)
        for kind, (color, name) in STYLE.items():
            rows = sorted(pts[kind], key=lambda r: r.fig(key))
            if rows:
                xs, ys = [r.fig(key) for r in rows], [100 * r.fig("accuracy") for r in rows]
                ax.plot(xs, ys, "o-" if kind == "front" else "o", color=color, label=name, ms=5, lw=1)
        budget = getattr(res, budget_attr)
        if budget:
            ax.axvline(budget, color="#222222", ls="--", lw=1, label="budget")
        ax.set_xlabel(label, fontsize=9)
        ax.set_ylabel("deployed top-1 accuracy (%)", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"edgekit search: {Path(res.model).name} on {res.target}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return True


def _svg(res, key: str, budget: int | None, label: str, w: int = 420, h: int = 300) -> str:
    pts = _points(res, key)
    rows = [r for kind in pts.values() for r in kind]
    if not rows:
        return f"<p>No measured trials for {html.escape(label)}.</p>"
    xs = [r.fig(key) for r in rows] + ([budget] if budget else [])
    ys = [100 * r.fig("accuracy") for r in rows]
    x0, x1 = 0, max(xs) * 1.05
    y0, y1 = min(ys) - 1, max(ys) + 1
    m = 50

    def sx(v: float) -> float:
        return m + (w - m - 10) * (v - x0) / (x1 - x0 or 1)

    def sy(v: float) -> float:
        return h - m + 20 - (h - m) * (v - y0) / (y1 - y0 or 1)

    parts = [f'<svg width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg" font-size="10">',
             f'<line x1="{m}" y1="{sy(y0):.1f}" x2="{w - 10}" y2="{sy(y0):.1f}" stroke="#000"/>',
             f'<line x1="{m}" y1="{sy(y0):.1f}" x2="{m}" y2="{sy(y1):.1f}" stroke="#000"/>',
             f'<text x="{w / 2:.0f}" y="{h - 2}" text-anchor="middle">{html.escape(label)} (0 … {int(x1):,})</text>',
             f'<text x="4" y="{sy(y1) - 4:.1f}">accuracy % ({y0:.1f} … {y1:.1f})</text>']
    if budget:
        parts.append(f'<line x1="{sx(budget):.1f}" y1="{sy(y0):.1f}" x2="{sx(budget):.1f}" y2="{sy(y1):.1f}" stroke="#222" stroke-dasharray="4"><title>budget {budget:,} B</title></line>')
    front = sorted(pts["front"], key=lambda r: r.fig(key))
    if len(front) > 1:
        path = " ".join(f"{sx(r.fig(key)):.1f},{sy(100 * r.fig('accuracy')):.1f}" for r in front)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{STYLE["front"][0]}"/>')
    for kind, (color, name) in STYLE.items():
        for r in pts[kind]:
            tip = html.escape(f"trial {r.number} ({name}): {100 * r.fig('accuracy'):.2f} %, {r.fig(key):,} B; {_stages(r)}")
            parts.append(f'<a href="trials/{r.number:04d}/report.md"><circle cx="{sx(r.fig(key)):.1f}" cy="{sy(100 * r.fig("accuracy")):.1f}" r="4" fill="{color}"><title>{tip}</title></circle></a>')
    parts.append("</svg>")
    return "\n".join(parts)


def _stages(r) -> str:
    if r.seeded:
        return r.seeded
    return " → ".join(s["name"] for s in (r.recipe or {}).get("stages", [])) or "none"


def front_html(res) -> str:
    """The interactive page: two SVG panels (hover a point for its trial, click for its report) and the trial table."""
    head, rows = res.table()
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    trs = "\n".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    panels = "\n".join(_svg(res, key, getattr(res, battr), label) for key, battr, label in PANELS)
    legend = " · ".join(f'<span style="color:{c}">●</span> {n}' for c, n in STYLE.values()) + " · dashed line: budget"
    title = html.escape(f"edgekit search: {Path(res.model).name} on {res.target}")
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>"
            "<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #999;padding:3px 6px;text-align:right}"
            "td:nth-child(2),td:last-child{text-align:left}svg{margin:8px;border:1px solid #ddd}</style></head>\n"
            f"<body><h1>{title}</h1>\n<p>{legend}. Hover a point for its trial, click it for the build report.</p>\n"
            f"<div>{panels}</div>\n<table><thead><tr>{th}</tr></thead><tbody>\n{trs}\n</tbody></table>\n</body></html>\n")
