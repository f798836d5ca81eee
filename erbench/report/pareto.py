"""Reward/drift trade-off geometry: non-dominated fronts and the hypervolume they dominate.

Points are (drift, reward) with drift oriented so that lower is better and reward higher is better;
callers flip the sign of a drift metric whose higher values are better (e.g. BLEU_En).
"""

import numpy as np


def pareto_front(drift, reward) -> np.ndarray:
    """Indices of the non-dominated points, sorted by drift. A point is dominated when another is at
    least as good in both coordinates and better in one; exact duplicates are kept once."""
    drift, reward = np.asarray(drift, float), np.asarray(reward, float)
    order = np.lexsort((-reward, drift))  # by drift, then by reward descending
    front, best_reward = [], -np.inf
    for i in order:
        if reward[i] > best_reward:  # an equal reward at no less drift is dominated (or a duplicate)
            front.append(i)
            best_reward = reward[i]
    return np.array(front, dtype=int)


def hypervolume(drift, reward, reference: tuple[float, float]) -> float:
    """Area dominated by the points and bounded by the reference (max drift, min reward), e.g. the
    initial model: the part of the plane with less drift and more reward than the reference."""
    drift, reward = np.asarray(drift, float), np.asarray(reward, float)
    ref_drift, ref_reward = reference
    keep = (drift < ref_drift) & (reward > ref_reward)
    if not keep.any():
        return 0.0
    front = pareto_front(drift[keep], reward[keep])
    xs, ys = drift[keep][front], reward[keep][front]
    # Staircase from the lowest-drift point: each front point adds a slab up to the next one's drift.
    edges = np.append(xs[1:], ref_drift)
    return float(np.sum((edges - xs) * (ys - ref_reward)))


def reward_at_drift(drift, reward, budget: float) -> float:
    """The best reward reached with drift <= budget (NaN when no point is inside the budget)."""
    drift, reward = np.asarray(drift, float), np.asarray(reward, float)
    inside = drift <= budget
    return float(reward[inside].max()) if inside.any() else float("nan")


def reward_at_fixed_drift(drift, reward, level: float) -> float:
    """The best reward along a run's path of evaluations (in training order) while drift <= level: a segment
    that crosses the level counts up to its crossing point, its reward linearly interpolated there (so a run
    evaluated sparsely is not penalised for jumping over the level). A path that never leaves the level gives
    its best reward. NaN when the path starts beyond the level: the initial model is already outside it, so
    the level says nothing about training."""
    drift, reward = np.asarray(drift, float), np.asarray(reward, float)
    if not len(drift) or drift[0] > level:
        return float("nan")
    candidates = list(reward[drift <= level])
    for (x0, y0), (x1, y1) in zip(zip(drift, reward), zip(drift[1:], reward[1:])):
        if (x0 - level) * (x1 - level) < 0:  # strictly on both sides: the segment crosses the level
            candidates.append(y0 + (y1 - y0) * (level - x0) / (x1 - x0))
    return float(max(candidates))
