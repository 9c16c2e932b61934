"""What `ltrr simulate` writes: summary.json, learning-curve plots and a markdown report."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path

from ._simulate import PolicyRun, SimulationSummary

PLOTS = ("success_at_10.png", "regret.png", "candidates_per_query.png")


def _rolling(values: Sequence[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def write_plots(runs: Mapping[str, PolicyRun], out: Path) -> list[Path]:
    """Learning curves per policy: success@10 and candidates per query (rolling means), and the
    cumulative regret against the oracle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    searches = max((len(r.rounds) for r in runs.values()), default=0)
    window = max(100, searches // 40)
    series = {
        "success_at_10.png": (
            f"success@10 (rolling mean over {window} searches)",
            {n: _rolling([float(x.success) for x in r.rounds], window) for n, r in runs.items()},
        ),
        "regret.png": (
            "cumulative regret vs. the cheapest sufficient strategy (oracle)",
            {n: list(itertools.accumulate(x.regret for x in r.rounds)) for n, r in runs.items()},
        ),
        "candidates_per_query.png": (
            f"candidates per query (rolling mean over {window} searches)",
            {n: _rolling([float(x.candidates) for x in r.rounds], window) for n, r in runs.items()},
        ),
    }
    written = []
    for file, (title, curves) in series.items():
        figure, axis = plt.subplots(figsize=(9, 5), dpi=110)
        for name, values in curves.items():
            learned = runs[name].learns
            axis.plot(
                values,
                label=name,
                linewidth=2.2 if learned else 1.2,
                linestyle="-" if learned else "--",
            )
        axis.set_title(title)
        axis.set_xlabel("search")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, ncol=2)
        figure.tight_layout()
        figure.savefig(out / file)
        plt.close(figure)
        written.append(out / file)
    return written


def markdown_report(summary: SimulationSummary) -> str:
    """The comparison table (whole run and last 20%) and the off-policy estimates."""
    p = summary.parameters
    lines = [
        "# ltrr simulate",
        "",
        f"{p['searches']} searches, seed {p['seed']}, {summary.seconds:.0f} s. Success@10: an item "
        "the user wanted was engaged with in the top 10. Recall: a wanted item was among the "
        "candidates. Regret: against the cheapest single strategy and size that had a wanted "
        "item (reward = recall - "
        f"{p['cost_per_candidate']} x candidates).",
        "",
        "| policy | success@10 | last 20% | nDCG@10 | recall | last 20% | candidates/query | "
        "last 20% | latency p50 / p95 ms | OpenSearch p50 ms | cumulative regret |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, policy in summary.policies.items():
        w, t = policy.whole_run, policy.last_20_percent
        lines.append(
            f"| {name} | {w.success_at_10:.3f} | {t.success_at_10:.3f} | {w.ndcg_at_10:.3f} | "
            f"{w.candidate_recall:.3f} | {t.candidate_recall:.3f} | "
            f"{w.candidates_per_query:.0f} | {t.candidates_per_query:.0f} | "
            f"{w.latency_ms_p50} / {w.latency_ms_p95} | {w.opensearch_ms_p50} | "
            f"{w.cumulative_regret:.0f} |"
        )
    curves = {name: p.learning_curve for name, p in summary.policies.items() if p.learning_curve}
    if curves:
        block = next(iter(curves.values()))[0].searches
        lines += [
            "",
            f"## Learning: the first and the last {block} searches",
            "",
            "| policy | success@10 first | last | recall first | last | candidates first | last |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, curve in curves.items():
            first, last = curve[0], curve[-1]
            lines.append(
                f"| {name} | {first.success_at_10:.3f} | {last.success_at_10:.3f} | "
                f"{first.candidate_recall:.3f} | {last.candidate_recall:.3f} | "
                f"{first.candidates_per_query:.0f} | {last.candidates_per_query:.0f} |"
            )
    if summary.off_policy:
        lines += [
            "",
            "## Off-policy estimates from the learned policy's logs",
            "",
            "| policy | metric | on-policy | IPS | SNIPS | DR | logged matches |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, metrics in summary.off_policy.items():
            on_policy = summary.policies[name].whole_run
            for metric, values in metrics.items():
                actual = getattr(on_policy, metric)
                lines.append(
                    f"| {name} | {metric} | {actual:.3f} | {values['ips']:.3f} | "
                    f"{values['snips']:.3f} | {values['dr']:.3f} | "
                    f"{values['matches']}/{values['rounds']} |"
                )
    lines += ["", *(f"![{name}]({name})" for name in PLOTS), ""]
    return "\n".join(lines)


def write_report(summary: SimulationSummary, runs: Mapping[str, PolicyRun], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(summary.model_dump_json(indent=2) + "\n", encoding="utf-8")
    write_plots(runs, out)
    (out / "report.md").write_text(markdown_report(summary), encoding="utf-8")
