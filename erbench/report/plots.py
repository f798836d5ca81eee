"""Reward/drift Pareto plots and training curves, drawn from run records only."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from erbench.report.pareto import pareto_front  # noqa: E402
from erbench.report.tables import drift_metrics, oriented, setting_means  # noqa: E402

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
METHOD_ORDER = ["ppo", "ppo-nokl", "reset", "reset-ema", "ema-ref", "elastic"]
LABELS = {"reward": "reward (val)", "perplexity": "perplexity (val)", "kl_to_init": "KL(π‖π0) (nats/seq)"}
plt.rcParams.update({"font.size": 8, "axes.titlesize": 9, "legend.fontsize": 7, "figure.dpi": 150})


def colours(methods) -> dict[str, str]:
    ordered = sorted(set(methods), key=lambda m: (METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER), m))
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(ordered)}


def save(fig, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")  # the suffix picks PNG, SVG or PDF
    plt.close(fig)
    return out


def pareto(runs: pd.DataFrame, curves: pd.DataFrame, task: str, x: str, y: str, out: Path,
           interpolations: pd.DataFrame | None = None) -> Path:
    """One panel per scale: runs (points), their checkpoint ladders (faint), per-method fronts of setting means
    with ± s.e. bars in both directions, the initial model, and weight-interpolation curves (dashed) where
    `erbench interpolate` stored them."""
    runs, curves = runs[runs["task"] == task], curves[curves["task"] == task]
    direction = drift_metrics(task).get(x, "lower")
    scales = sorted(runs["scale"].unique())
    fig, axes = plt.subplots(1, len(scales), figsize=(3.4 * len(scales), 2.9), squeeze=False, layout="constrained")
    palette = colours(runs["method"])
    for ax, scale in zip(axes[0], scales):
        here, ladders = runs[runs["scale"] == scale], curves[curves["scale"] == scale]
        for (method, path), ladder in ladders.groupby(["method", "path"]):
            ax.plot(ladder[x], ladder[y], color=palette[method], alpha=0.18, linewidth=0.8, zorder=1)
        ax.scatter(here[x], here[y], color=[palette[m] for m in here["method"]], s=10, alpha=0.5, zorder=2, linewidths=0)
        means = setting_means(here, [x, y])
        for method, rows in means.groupby("method"):
            rows = rows.reset_index(drop=True)
            front = rows.loc[pareto_front(oriented(rows[x], direction), rows[y])]
            front = front.sort_values(x)
            ax.errorbar(rows[x], rows[y], xerr=rows[f"{x}_se"].fillna(0), yerr=rows[f"{y}_se"].fillna(0), fmt="none",
                        ecolor=palette[method], elinewidth=0.8, capsize=2, zorder=3)
            ax.plot(front[x], front[y], "-o", color=palette[method], markersize=4, linewidth=1.4, zorder=4, label=method)
            for _, row in rows.iterrows():
                if row["setting"]:
                    ax.annotate(row["setting"], (row[x], row[y]), fontsize=5, xytext=(3, 3), textcoords="offset points")
        if interpolations is not None and len(interpolations):
            lines = interpolations[(interpolations["task"] == task) & (interpolations["scale"] == scale)]
            for (method, path, curve), line in lines.groupby(["method", "path", "curve"]):
                ax.plot(line[x], line[y], linestyle="--" if curve == "policy" else ":", marker=".", markersize=3,
                        color=palette[method], linewidth=0.9, zorder=3, label=f"{method} θ(α)" + (" EMA" if curve == "ema" else ""))
        initial_x, initial_y = here[f"initial_{x}"].mean(), here[f"initial_{y}"].mean()
        ax.scatter([initial_x], [initial_y], marker="*", s=90, color="black", zorder=5, label="initial model")
        ax.set_title(f"{task}, scale {scale} ({here['seed'].nunique()} seed{'s' if here['seed'].nunique() > 1 else ''})")
        ax.set_xlabel(LABELS.get(x, x) + (" ↓" if direction == "lower" else " ↑"))
        ax.set_ylabel(LABELS.get(y, y) + " ↑")
        ax.grid(alpha=0.3)
    handles, labels = axes[0][-1].get_legend_handles_labels()
    unique = dict(zip(labels, handles))  # one entry per method and curve kind
    axes[0][-1].legend(unique.values(), unique.keys(), loc="best", frameon=False)
    return save(fig, out)


def training_curves(curves: pd.DataFrame, task: str, out: Path) -> Path:
    """Reward and each drift metric against iteration: seed mean ± s.e. per method and setting, resets as
    dotted lines, and the curve broken at each reset (the paper's Figure 4 style)."""
    curves = curves[curves["task"] == task]
    metrics = [m for m in ("reward", *drift_metrics(task)) if m in curves]  # HumanEval only where code could run
    scales = sorted(curves["scale"].unique())
    fig, axes = plt.subplots(len(metrics), len(scales), figsize=(3.4 * len(scales), 2.2 * len(metrics)), squeeze=False,
                             sharex="col", layout="constrained")
    palette = colours(curves["method"])
    for column, scale in enumerate(scales):
        here = curves[curves["scale"] == scale]
        for (method, setting), group in here.groupby(["method", "setting"]):
            resets = sorted({r for rs in group["resets"] for r in rs})
            stats = group.groupby("iteration")[metrics].agg(["mean", "sem"])
            label = method + (f" [{setting}]" if setting else "")
            for row, metric in enumerate(metrics):
                ax = axes[row][column]
                iterations = stats.index.to_numpy()
                mean, sem = stats[(metric, "mean")].to_numpy(), stats[(metric, "sem")].fillna(0).to_numpy()
                # Break the curve at each reset; an evaluation at a reset iteration comes after the reset.
                segment = np.searchsorted(resets, iterations, side="right")
                for index in np.unique(segment):
                    inside = segment == index
                    ax.plot(iterations[inside], mean[inside], color=palette[method], linewidth=1.2,
                            label=label if index == segment[0] and row == 0 else None)
                    ax.fill_between(iterations[inside], (mean - sem)[inside], (mean + sem)[inside], color=palette[method], alpha=0.2)
                for reset in resets:
                    ax.axvline(reset, color=palette[method], linestyle=":", linewidth=0.8, alpha=0.7)
        for row, metric in enumerate(metrics):
            axes[row][column].set_ylabel(LABELS.get(metric, metric))
            axes[row][column].grid(alpha=0.3)
        axes[0][column].set_title(f"{task}, scale {scale}")
        axes[-1][column].set_xlabel("PPO iteration")
        axes[0][column].legend(loc="best", frameon=False)
    return save(fig, out)
