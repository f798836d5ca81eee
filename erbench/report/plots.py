"""Reward/drift figures (the methods at their recipe settings; the settings swept) and training curves, drawn from
run records only."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from erbench.report.tables import drift_metrics, setting_means  # noqa: E402

# A fixed colour per paper method (Okabe-Ito and Tol's muted, distinguishable with the common colour-vision
# deficiencies; Elastic Reset in the strongest); other methods take the rest in order.
METHOD_COLOURS = {"elastic": "#D55E00", "ppo": "#0072B2", "ppo-nokl": "#882255", "reset": "#009E73", "reset-ema": "#CC79A7",
                  "ema-ref": "#E69F00", "ref-reset": "#56B4E9", "nlpo": "#999933", "frozen-english": "#332288"}
PALETTE = ["#44AA99", "#888888", "#117733", "#AA4499", "#DDCC77", "#661100"]
METHOD_ORDER = ["ppo", "ppo-nokl", "reset", "reset-ema", "ema-ref", "elastic", "ref-reset", "nlpo", "frozen-english"]
LABELS = {"reward": "reward (val)", "reward_gold": "gold reward (val)", "perplexity": "perplexity (val)", "kl_to_init": "KL(π‖π0) (nats/seq)"}
plt.rcParams.update({"font.size": 8, "axes.titlesize": 9, "legend.fontsize": 7, "figure.dpi": 150})


def order_key(method: str) -> tuple:
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def colours(methods) -> dict[str, str]:
    others = sorted(set(methods) - set(METHOD_COLOURS), key=order_key)
    return {**METHOD_COLOURS, **{m: PALETTE[i % len(PALETTE)] for i, m in enumerate(others)}}


def save(fig, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")  # the suffix picks PNG, SVG or PDF
    plt.close(fig)
    return out


def legend_outside(fig, ax) -> None:
    """One legend entry per label, right of the axes, so no entry covers data."""
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, borderaxespad=0)


def drift_axis(ax, x: str, direction: str, sqrt_x: bool) -> None:
    if sqrt_x:  # Gao et al. 2023 plot reward against d = sqrt(KL); the ticks stay in the metric's units, at squares
        right = ax.get_xlim()[1]
        ax.set_xscale("function", functions=(lambda v: np.sqrt(np.clip(v, 0, None)), np.square))
        ax.set_xlim(0, right)
        roots = np.unique(np.round(np.linspace(0, np.sqrt(right), 7)))
        ax.set_xticks(roots**2, [f"{r * r:g}" for r in roots])
    ax.set_xlabel(LABELS.get(x, x) + (", √ scale" if sqrt_x else "") + (" ↓" if direction == "lower" else " ↑"))


def pareto(runs: pd.DataFrame, task: str, scale: str, x: str, y: str, out: Path,
           interpolations: pd.DataFrame | None = None, sqrt_x: bool = False) -> Path | None:
    """The paper's figure: one point per method at its recipe settings, seed mean ± s.e. in both directions, each
    seed faintly behind it, the initial model as a star, and weight-interpolation curves (dashed) where
    `erbench interpolate` stored them. Other settings are drawn by `ablations`. None without a run at the recipe's settings."""
    here = runs[(runs["task"] == task) & (runs["scale"] == scale)]
    default = here[here["default"]]
    if default.empty:
        return None
    direction = drift_metrics(task).get(x, "lower")
    fig, ax = plt.subplots(figsize=(4.6, 3.2), layout="constrained")
    palette = colours(here["method"])
    ax.scatter(default[x], default[y], color=[palette[m] for m in default["method"]], s=9, alpha=0.3, zorder=2, linewidths=0)
    means = setting_means(default, [x, y])
    for _, row in means.sort_values("method", key=lambda m: m.map(order_key)).iterrows():
        ax.errorbar(row[x], row[y], xerr=np.nan_to_num(row[f"{x}_se"]), yerr=np.nan_to_num(row[f"{y}_se"]), fmt="o",
                    color=palette[row["method"]], markersize=5, elinewidth=1, capsize=2.5, zorder=4,
                    label=f"{row['method']} (n={row['n_seeds']})")
    if interpolations is not None and len(interpolations):
        lines = interpolations[(interpolations["task"] == task) & (interpolations["scale"] == scale)]
        for (method, path, curve), line in lines.groupby(["method", "path", "curve"]):
            ax.plot(line[x], line[y], linestyle="--" if curve == "policy" else ":", marker=".", markersize=3,
                    color=palette[method], linewidth=0.9, zorder=3, label=f"{method} θ(α)" + (" EMA" if curve == "ema" else ""))
    ax.scatter([default[f"initial_{x}"].mean()], [default[f"initial_{y}"].mean()], marker="*", s=110, color="black", zorder=5,
               label="initial model")
    ax.set_title(f"{task}, scale {scale}: recipe settings, mean ± s.e. over seeds")
    drift_axis(ax, x, direction, sqrt_x)
    ax.set_ylabel(LABELS.get(y, y) + " ↑")
    ax.grid(alpha=0.3)
    legend_outside(fig, ax)
    return save(fig, out)


def ablations(runs: pd.DataFrame, task: str, scale: str, x: str, y: str, out: Path, sqrt_x: bool = False) -> Path | None:
    """Every setting of the methods that swept one (decays, reset periods, KL coefficients, ...), a row each, grouped
    by method with the recipe setting first: reward and drift side by side as mean ± s.e. over seeds. None without any."""
    here = runs[(runs["task"] == task) & (runs["scale"] == scale)]
    varied = sorted(set(here.loc[~here["default"], "method"]), key=order_key)
    if not varied:
        return None
    rows = []
    for method in varied:
        means = setting_means(here[here["method"] == method], [x, y, f"initial_{x}", f"initial_{y}"]).merge(
            here[["method", "setting", "default"]].drop_duplicates(), on=["method", "setting"])
        rows += [row for _, row in means.sort_values(["default", "setting"], ascending=[False, True]).iterrows()]
    palette = colours(here["method"])
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 0.24 * len(rows) + 1.1), sharey=True, layout="constrained")
    positions = np.arange(len(rows))[::-1]
    for ax, metric in zip(axes, (y, x)):
        for position, row in zip(positions, rows):
            ax.errorbar(row[metric], position, xerr=np.nan_to_num(row[f"{metric}_se"]), fmt="o" if row["default"] else "s",
                        color=palette[row["method"]], markersize=4.5 if row["default"] else 3.5, elinewidth=0.9, capsize=2)
        # Each row's own initial model: a setting may change it (translation's agents, IMDB's LM size).
        ax.scatter([row[f"initial_{metric}"] for row in rows], positions, marker="|", s=60, color="black", linewidths=1, zorder=1)
        ax.grid(alpha=0.3, axis="x")
    axes[0].set_xlabel(LABELS.get(y, y) + " ↑")
    drift_axis(axes[1], x, drift_metrics(task).get(x, "lower"), sqrt_x)
    axes[0].set_yticks(positions, [f"{row['method']} [{row['setting'] or 'recipe'}]" + (" ●recipe" if row["default"] else "")
                                   + f"  n={row['n_seeds']}" for row in rows])
    fig.suptitle(f"{task}, scale {scale}: the settings swept (mean ± s.e. over seeds; black tick: the row's initial model)", fontsize=9)
    return save(fig, out)


def training_curves(curves: pd.DataFrame, task: str, out: Path) -> Path:
    """Reward (and the gold reward, where the task has one) and each drift metric against iteration, one line per
    method at its recipe settings: seed mean ± s.e. band, resets as dotted lines, and the curve broken at each reset
    (the paper's Figure 4 style)."""
    curves = curves[(curves["task"] == task) & curves["default"]]
    rewards = [m for m in ("reward", "reward_gold") if m in curves and curves[m].notna().any()]
    metrics = rewards + [m for m in drift_metrics(task) if m in curves]  # HumanEval only where code could run
    scales = sorted(curves["scale"].unique())
    fig, axes = plt.subplots(len(metrics), len(scales), figsize=(3.4 * len(scales) + 1.2, 1.9 * len(metrics)),
                             squeeze=False, sharex="col", layout="constrained")
    palette = colours(curves["method"])
    for column, scale in enumerate(scales):
        here = curves[curves["scale"] == scale]
        for method, group in sorted(here.groupby("method"), key=lambda item: order_key(item[0])):
            resets = sorted({r for rs in group["resets"] for r in rs})
            stats = group.groupby("iteration")[metrics].agg(["mean", "sem", "count"])
            for row, metric in enumerate(metrics):
                ax = axes[row][column]
                known = stats[(metric, "count")].to_numpy() > 0  # records written before a metric existed lack it
                iterations = stats.index.to_numpy()[known]
                mean = stats[(metric, "mean")].to_numpy()[known]
                sem = stats[(metric, "sem")].fillna(0).to_numpy()[known]
                # Break the curve at each reset; an evaluation at a reset iteration comes after the reset.
                segment = np.searchsorted(resets, iterations, side="right")
                seeds = int(group[group[metric].notna()]["seed"].nunique())
                for index in np.unique(segment):
                    inside = segment == index
                    ax.plot(iterations[inside], mean[inside], color=palette[method], linewidth=1.2, marker="o", markersize=2.5,
                            label=f"{method} (n={seeds})" if index == segment[0] and row == 0 else None)  # markers: a segment may be one evaluation
                    if inside.sum() == 1:  # a band needs two points: one evaluation between resets gets a bar
                        ax.errorbar(iterations[inside], mean[inside], yerr=sem[inside], fmt="none", ecolor=palette[method], alpha=0.5, capsize=2)
                    else:
                        ax.fill_between(iterations[inside], (mean - sem)[inside], (mean + sem)[inside], color=palette[method], alpha=0.2)
                for reset in resets:
                    ax.axvline(reset, color=palette[method], linestyle=":", linewidth=0.8, alpha=0.7)
        for row, metric in enumerate(metrics):
            axes[row][column].set_ylabel(LABELS.get(metric, metric))
            axes[row][column].grid(alpha=0.3)
            if here[metric].isna().all():
                axes[row][column].text(0.5, 0.5, f"no {metric} in these records", transform=axes[row][column].transAxes,
                                       ha="center", va="center", color="grey")
        axes[0][column].set_title(f"{task}, scale {scale}")
        axes[-1][column].set_xlabel("PPO iteration")
    legend_outside(fig, axes[0][-1])
    return save(fig, out)


def pass_at_k(runs: pd.DataFrame, task: str, scale: str, out: Path) -> Path | None:
    """pass@k against k (log scale), a line per method and setting (the recipe's unlabelled), final val, seed mean ±
    s.e., the initial model dashed: where RL trades the problems only a few samples solve (large k) for pass@1.
    None without pass@k metrics."""
    here = runs[(runs["task"] == task) & (runs["scale"] == scale)]
    columns = sorted((c for c in here if c.startswith("pass@") and here[c].notna().any()), key=lambda c: int(c[5:]))
    if not columns:
        return None
    ks = [int(c[5:]) for c in columns]
    fig, ax = plt.subplots(figsize=(4.6, 3.2), layout="constrained")
    palette = colours(here["method"])
    means = setting_means(here, columns)
    for _, row in means.sort_values("method", key=lambda m: m.map(order_key)).iterrows():
        ax.errorbar(ks, [row[c] for c in columns], yerr=[np.nan_to_num(row[f"{c}_se"]) for c in columns], marker="o",
                    markersize=3, linewidth=1.2, capsize=2, color=palette[row["method"]],
                    label=f"{row['method']}{f' [{row.setting}]' if row.setting else ''} (n={row['n_seeds']})")
    ax.plot(ks, [here[f"initial_{c}"].mean() for c in columns], color="black", linestyle="--", marker="*", markersize=5,
            linewidth=1, label="initial model")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("k (samples per problem)")
    ax.set_ylabel("pass@k (val, unbiased) ↑")
    ax.set_title(f"{task}, scale {scale}: final pass@k, mean ± s.e. over seeds")
    ax.grid(alpha=0.3)
    legend_outside(fig, ax)
    return save(fig, out)
