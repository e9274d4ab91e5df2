"""Section: training curves. The cross-entropy per training step of each trained condition of the
focus model, one panel per training scope (shown under the Per-Task × Condition Overview).

Template partial: ``report/templates/sections/training.md.j2``.
"""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from icldistill.render.common import Inputs, task_title
from icldistill.render.contracts import MULTITASK_SCOPE
from icldistill.render.plotting import condition_colors, figure_labels, save_figure, scope_panels


def training_curves(
    training: pd.DataFrame,
    focus_model: str,
    path: str | PathLike,
    labels: Mapping[str, str] | None = None,
    colors: Mapping[str, str] | None = None,
) -> Path:
    """One panel per training scope: the cross-entropy of each trained condition of
    ``focus_model`` per step (seed 0 of replicated runs; a run shared by two conditions is
    drawn once, under the first)."""
    own = training[training["model"] == focus_model].dropna(subset=["ce"])
    if "seed" in own and own["seed"].notna().any():
        own = own[own["seed"] == own["seed"].min()]
    scopes = list(dict.fromkeys(own["scope"]))
    conditions = list(dict.fromkeys(own["condition"]))
    names = figure_labels(conditions, labels)
    colors = colors or condition_colors(conditions)
    figure, flat = scope_panels(scopes)
    for axes, scope in zip(flat, scopes, strict=False):
        part = own[own["scope"] == scope]
        for condition in conditions:
            line = part[part["condition"] == condition].groupby("step")["ce"].mean()
            if not line.empty:
                axes.plot(line.index, line.values, color=colors.get(condition), linewidth=1.4, label=names[condition])
        title = "Multitask (all tasks)" if scope == MULTITASK_SCOPE else task_title(scope)
        axes.set_title(title, fontsize=10, fontweight="bold")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("step")
        axes.set_ylabel("cross-entropy (nats/token)")
        sns.despine(ax=axes)
    for axes in flat[len(scopes) :]:
        axes.set_visible(False)
    handles, texts = flat[0].get_legend_handles_labels()
    figure.legend(handles, texts, loc="lower center", ncol=min(len(texts), 5), frameon=False, fontsize=9)
    figure.suptitle(f"{focus_model} — training cross-entropy per step", fontsize=12, fontweight="bold")
    figure.tight_layout(rect=(0, 0.08, 1, 0.95))
    return save_figure(figure, path)


def training_figure(inputs: Inputs, path: Path) -> Path | None:
    """``training_curves.png`` when the training log has steps of the focus model."""
    training, focus_model = inputs.training, inputs.focus_model
    if training is None or "ce" not in training or training[training["model"] == focus_model]["ce"].isna().all():
        return None
    return training_curves(training, focus_model, path, inputs.labels, condition_colors(inputs.shown))
