"""What `ltrr simulate` writes: summary.json, report.md (the verdict first, then the whole-system
and retrieval-alone tables, the learning and the off-policy estimates), plots a person reads at a
glance, and optionally the learned policy's decisions as VW DSJSON."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..policy import Interval, OffPolicyEstimate
from ..policy._features import context_features, plan_action
from ..strategies import strategies
from ._simulate import (
    LEARNED,
    ORACLE,
    Logged,
    PolicyMetrics,
    PolicyRun,
    SimulationSummary,
)

PLOTS = ("frontier.png", "success_at_10.png", "regret.png")
CURVE_LINES = 6


def _rolling(values: Sequence[float], window: int) -> list[float]:
    """Means of full windows only (a mean of the first few searches is noise, not learning)."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        if i + 1 >= window:
            out.append(total / window)
    return out


def best_static(summary: SimulationSummary) -> str | None:
    """The single strategy with the best last-20% success@10."""
    singles = [name for name in summary.policies if name in strategies()]
    return max(
        singles, key=lambda n: summary.policies[n].last_20_percent.success_at_10, default=None
    )


def _curve_lines(summary: SimulationSummary) -> list[str]:
    """At most six: LTR&R, the best static policy, all, rule, oracle, memory."""
    wanted = ["ltrr", best_static(summary), "all", "rule", ORACLE, "memory"]
    return [n for n in dict.fromkeys(w for w in wanted if w) if n in summary.policies][:CURVE_LINES]


def write_plots(summary: SimulationSummary, runs: Mapping[str, PolicyRun], out: Path) -> bool:
    """The cost-quality frontier (success@10 against candidates per query and against latency
    p50, one labelled point per policy), the learning curves and the cumulative regret. False
    (and no plot) without matplotlib: plotting is an extra (`pip install 'ltrr-os[plots]'`),
    serving never needs it."""
    try:
        import matplotlib
    except ImportError:
        return False

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.5), dpi=110)
    for axis, x_label, field in zip(
        axes,
        ("candidates per query", "latency p50 (ms): understanding, decision, msearch"),
        ("candidates_per_query", "latency_ms_p50"),
        strict=True,
    ):
        for name, policy in summary.policies.items():
            tail = policy.last_20_percent
            x = getattr(tail, field)
            if x is None:
                continue
            learned = name in LEARNED
            axis.scatter([x], [tail.success_at_10], s=60 if learned else 30, zorder=3)
            axis.annotate(name, (x, tail.success_at_10), textcoords="offset points", xytext=(4, 4))
        axis.set_xlabel(x_label)
        axis.set_ylabel("success@10 (last 20% of searches)")
        axis.grid(alpha=0.3)
    figure.suptitle("Cost and quality: up and to the left is better")
    figure.tight_layout()
    figure.savefig(out / "frontier.png")
    plt.close(figure)

    searches = max((len(r.rounds) for r in runs.values()), default=0)
    window = max(1, min(searches // 4, max(100, searches // 40)))
    lines = _curve_lines(summary)
    for file, title, y_label, series in (
        (
            "success_at_10.png",
            "Learning: success@10 as the searches go",
            f"success@10 (mean of the last {window} searches)",
            {n: _rolling([float(x.success) for x in runs[n].rounds], window) for n in lines},
        ),
        (
            "regret.png",
            "Regret against the oracle",
            "cumulative regret (reward = recall - "
            f"{summary.parameters['cost_per_candidate']} x candidates; units of one search's "
            "recall)",
            {n: list(itertools.accumulate(x.regret for x in runs[n].rounds)) for n in lines},
        ),
    ):
        figure, axis = plt.subplots(figsize=(9, 5), dpi=110)
        for name, values in series.items():
            start = searches - len(values) + 1  # a rolling mean starts at its first full window
            axis.plot(
                range(start, start + len(values)),
                values,
                label=name,
                linewidth=2.4 if name in LEARNED else 1.3,
            )
        axis.set_title(title)
        axis.set_xlabel("searches")
        axis.set_ylabel(y_label)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=9)
        figure.tight_layout()
        figure.savefig(out / file)
        plt.close(figure)
    return True


def _row(name: str, whole: PolicyMetrics, tail: PolicyMetrics) -> str:
    return (
        f"| {name} | {whole.success_at_10:.3f} | {tail.success_at_10:.3f} | "
        f"{whole.ndcg_at_10:.3f} | {whole.candidate_recall:.3f} | {tail.candidate_recall:.3f} | "
        f"{whole.candidates_per_query:.0f} | {tail.candidates_per_query:.0f} | "
        f"{whole.latency_ms_p50} / {whole.latency_ms_p95} | {whole.cumulative_regret:.0f} |"
    )


HEADER = [
    "| policy | success@10 | last 20% | nDCG@10 | recall | last 20% | candidates/query | "
    "last 20% | latency p50 / p95 ms | cumulative regret |",
    "|---|---|---|---|---|---|---|---|---|---|",
]


def verdict(summary: SimulationSummary) -> str:
    """The result in one sentence."""
    policies = summary.policies
    if "ltrr" not in policies:
        return "The learned policy (ltrr) was not part of this run."
    ltrr = policies["ltrr"].last_20_percent
    parts = [
        f"Over the last 20% of searches, LTR&R found what users wanted {ltrr.success_at_10:.1%}"
    ]
    static = best_static(summary)
    if static is not None and (best := policies[static].last_20_percent.success_at_10) > 0:
        parts.append(f"{ltrr.success_at_10 / best:.2f}x the best single strategy ({static})")
    if "all" in policies and policies["all"].last_20_percent.success_at_10 > 0:
        everything = policies["all"].last_20_percent
        parts.append(
            f"{ltrr.success_at_10 / everything.success_at_10:.2f}x all strategies at 100 with "
            f"{ltrr.candidates_per_query / everything.candidates_per_query:.0%} of their "
            "candidates"
        )
    return ", ".join(parts) + "."


def _generators_section(summary: SimulationSummary) -> list[str]:
    """Success by query family, what each new generator buys (LTR&R against LTR&R without
    it), where the bandit runs them, and how soon new entities are found."""
    policies = summary.policies
    families = sorted({f for s in policies.values() for f in s.by_family})
    if not families:
        return []
    lines = [
        "",
        "## By query family (success@10 over the whole run)",
        "",
        "| policy | " + " | ".join(families) + " | vague, users with history |",
        "|---|" + "---|" * (len(families) + 1),
    ]
    for name, s in policies.items():
        cells = [f"{s.by_family[f]:.3f}" if f in s.by_family else "" for f in families]
        vague = "" if s.vague_with_history is None else f"{s.vague_with_history:.3f}"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {vague} |")
    if "ltrr" in policies and policies["ltrr"].generator_share:
        share = policies["ltrr"].generator_share
        lines += [
            "",
            "## Where LTR&R runs the new generators (share of its plans, by query family)",
            "",
            "| family | related | personal | fresh |",
            "|---|---|---|---|",
            *(
                f"| {family} | {g['related']:.0%} | {g['personal']:.0%} | {g['fresh']:.0%} |"
                for family, g in share.items()
            ),
        ]
    found = {n: s.new_entities for n, s in policies.items() if s.new_entities is not None}
    if found:
        lines += [
            "",
            "## New entities: searches from arrival to first engagement",
            "",
            "| policy | arrived | engaged | median searches | mean (never = run end) |",
            "|---|---|---|---|---|",
        ]
        for name, new in found.items():
            median = new.median_searches_to_first_engagement
            lines.append(
                f"| {name} | {new.arrived} | {new.engaged} | "
                f"{'' if median is None else f'{median:.0f}'} | "
                f"{new.mean_searches_counting_never_as_run_end} |"
            )
    return lines


def _interval(value: Interval) -> str:
    if value.value is None:
        return "no support"
    return f"{value.value:.3f} [{value.low:.3f}, {value.high:.3f}]"


def markdown_report(summary: SimulationSummary) -> str:
    p = summary.parameters
    lines = ["# ltrr simulate", "", f"**{verdict(summary)}**", ""]
    if not summary.complete:
        lines += [f"**The run stopped early** ({summary.error}); figures cover what ran.", ""]
    lines += [
        f"{p['searches']} searches, seed {p['seed']}, {summary.seconds:.0f} s; candidate budget "
        f"{p['candidate_budget']}, {p['shown']} results shown, rankers retrained every "
        f"{p['ranker_every']} searches, memory written every {p['memory_every']}. Each policy "
        "learns its own memory, profiles and ranker from its own traffic. Success@10: an item "
        "the user wanted was engaged with in the top 10. Recall: a wanted item was among the "
        "candidates. Regret: against the cheapest single strategy and size that had a wanted "
        f"item (reward = recall - {p['cost_per_candidate']} x candidates).",
        "",
        "## The whole system (each policy with the ranker it learned)",
        "",
        *HEADER,
        *(_row(n, s.whole_run, s.last_20_percent) for n, s in summary.policies.items()),
        "",
        "## Retrieval alone (the same candidates, every policy ranked by the fused score)",
        "",
        *HEADER,
        *(
            _row(n, s.retrieval_alone, s.retrieval_alone_last_20_percent)
            for n, s in summary.policies.items()
        ),
    ]
    lines += _generators_section(summary)
    curves = {name: s.learning_curve for name, s in summary.policies.items() if s.learning_curve}
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
            "Each static policy's value estimated from LTR&R's logged decisions, which log the "
            "probability of every plan; 95% bootstrap intervals; clipped weights; 'no support' "
            "where the logs never chose the target's plan.",
            "",
            "| policy | metric | on-policy | IPS | SNIPS | DR | matches | ESS | weights |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name, metrics in summary.off_policy.items():
            on_policy = summary.policies[name].whole_run
            for metric, found in metrics.items():
                lines.append(_ope_row(name, metric, getattr(on_policy, metric), found))
    lines += ["", "## Settings and versions", ""]
    lines += [f"- {key}: {value}" for key, value in {**p, **summary.versions}.items()]
    lines += ["", *(f"![{name}]({name})" for name in PLOTS), ""]
    return "\n".join(lines)


def _ope_row(name: str, metric: str, actual: float, found: OffPolicyEstimate) -> str:
    check = "suspect" if found.propensities_suspect else "ok"
    return (
        f"| {name} | {metric} | {actual:.3f} | {_interval(found.ips)} | "
        f"{_interval(found.snips)} | {_interval(found.dr)} | {found.matches}/{found.rounds} | "
        f"{found.effective_sample_size:.0f} | {check} |"
    )


def write_dsjson(logged: Sequence[Logged], path: Path, cost_per_candidate: float) -> int:
    """The system under test's logged decisions as VW DSJSON (one line per decision: the
    shared context, every plan's action features, the plan chosen, its cost (candidates at
    `cost_per_candidate` minus recall) and probability, the whole PMF), for
    `vw --cb_explore_adf --dsjson --explore_eval`. Returns lines written."""
    written = 0
    with path.open("w", encoding="utf-8") as out:
        for row in logged:
            decision = row.decision
            if not decision.distribution:
                continue
            plans = [option.plan for option in decision.distribution]
            chosen = plans.index(decision.plan) if decision.plan in plans else None
            if chosen is None:
                continue
            sources = {o.strategy: o.source_type for o in row.context.options}
            history = decision.action_history
            actions = [
                _namespaces(
                    plan_action(
                        tuple(
                            (s, sources[s], n, history.get(s, ("new", "new")))
                            for s, n in plan.items()
                        )
                    )
                )
                for plan in plans
            ]
            cost = cost_per_candidate * sum(decision.plan.values()) - row.recall
            line = {
                "_label_cost": round(cost, 6),
                "_label_probability": decision.distribution[chosen].probability,
                "_label_Action": chosen + 1,
                "_labelIndex": chosen,
                "a": [chosen + 1, *[i + 1 for i in range(len(plans)) if i != chosen]],
                "c": {**_namespaces(context_features(row.context)), "_multi": actions},
                "p": [
                    decision.distribution[i].probability
                    for i in [chosen, *[i for i in range(len(plans)) if i != chosen]]
                ],
            }
            out.write(json.dumps(line) + "\n")
            written += 1
    return written


def _namespaces(text: str) -> dict[str, dict[str, float]]:
    """VW text features ('|q a b:0.5 |u c') as DSJSON namespaces."""
    found: dict[str, dict[str, float]] = {}
    for chunk in text.split("|")[1:]:
        name, *features = chunk.split()
        values = found.setdefault(name, {})
        for feature in features:
            key, _, value = feature.partition(":")
            values[key] = float(value) if value else 1.0
    return found


def write_report(summary: SimulationSummary, runs: Mapping[str, PolicyRun], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(summary.model_dump_json(indent=2) + "\n", encoding="utf-8")
    plotted = write_plots(summary, runs, out)
    report = markdown_report(summary)
    if not plotted:
        report += "\n(No plots: install matplotlib, `pip install 'ltrr-os[plots]'`.)\n"
    (out / "report.md").write_text(report, encoding="utf-8")
