"""Assemble the results report: each section's context, its figures and the Jinja template → RESULTS.md.

A section is one module (see :data:`SECTIONS`) owning its tables, its ``context`` (ready-to-print
strings), its figures and its template partial under ``report/templates/sections/``; the template
only lays them out. :func:`render_report` is the entry point the workflow and the CLI call.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path

import pandas as pd
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined

from icldistill.render import (
    compute,
    conditions,
    contracts,
    crosslingual,
    dynamic,
    figures,
    gaps,
    intervals,
    overview,
    parse_failures,
    reference,
    run_record,
    sweep,
)
from icldistill.render.common import Inputs, condition_order, model_order, primary_cells, shown_conditions

#: The template used when none is given: ``report/templates/results.md.j2`` of the repository.
DEFAULT_TEMPLATE = Path(__file__).resolve().parents[3] / "report" / "templates" / "results.md.j2"

REPORT_NAME = "RESULTS.md"
FIGURES_DIR = "figures"

#: The sections whose ``context(inputs)`` fills the template (each returns its own keys).
SECTIONS = (
    overview,
    conditions,
    gaps,
    crosslingual,
    sweep,
    dynamic,
    intervals,
    parse_failures,
    reference,
    run_record,
    compute,
)


def build_context(inputs: Inputs, figure_links: dict[str, str]) -> dict:
    """Everything the template prints, as strings and lists of strings: the keys of every
    section's ``context`` and ``figures``.

    ``figure_links`` maps a figure role (see :func:`figures.figure_names`) to its link relative
    to RESULTS.md; a role missing from it is not shown. A section whose input is absent (no
    sweep, no run record, …) gives None under its key.
    """
    context = {"figures": figure_links}
    for section in SECTIONS:
        part = section.context(inputs)
        # two sections filling one key would silently hide one of them
        if shared := context.keys() & part.keys():
            raise ValueError(f"{section.__name__} fills template key(s) already filled: {', '.join(sorted(shared))}")
        context |= part
    return context


def render_markdown(context: dict, template: str | PathLike | None = None) -> str:
    """Fill the Jinja template (default :data:`DEFAULT_TEMPLATE`) with ``context``.

    Partials (``sections/*.md.j2``) are looked up beside the template first, then beside the
    default one, so a custom template can include the default partials.
    """
    path = Path(template) if template is not None else DEFAULT_TEMPLATE
    environment = Environment(
        loader=ChoiceLoader([FileSystemLoader(str(path.parent)), FileSystemLoader(str(DEFAULT_TEMPLATE.parent))]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    text = environment.get_template(path.name).render(**context)
    # Optional blocks leave runs of blank lines; Markdown needs at most one.
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n") + "\n"


def default_focus_model(cells: pd.DataFrame) -> str:
    """The model with the most primary-metric cells that have a value (ties: first listed)."""
    models = model_order(cells)
    if not models:
        raise ValueError("cells table has no rows")
    counts = primary_cells(cells).dropna(subset=["value"]).groupby("model").size()
    return max(models, key=lambda model: (int(counts.get(model, 0)), -models.index(model)))


def resolve_choices(
    cells: pd.DataFrame,
    focus_model: str | None,
    heatmap_condition: str | None,
    conditions_table: pd.DataFrame | None = None,
) -> tuple[str, str]:
    """The focus model and heatmap condition to use, defaulted and checked against the cells.

    The default heatmap condition is never a sweep member (see :func:`common.shown_conditions`).
    """
    models, present = model_order(cells), condition_order(cells, conditions_table)
    if focus_model is None:
        focus_model = default_focus_model(cells)
    elif focus_model not in models:
        raise ValueError(f"focus model {focus_model!r} not in cells; models: {', '.join(models)}")
    if heatmap_condition is None:
        heatmap_condition = crosslingual.default_heatmap_condition(shown_conditions(cells, conditions_table))
    elif heatmap_condition not in present:
        raise ValueError(f"heatmap condition {heatmap_condition!r} not in cells; conditions: {', '.join(present)}")
    return focus_model, heatmap_condition


def render_report(
    cells: pd.DataFrame,
    out_dir: str | PathLike,
    focus_model: str | None = None,
    heatmap_condition: str | None = None,
    template: str | PathLike | None = None,
    conditions: pd.DataFrame | None = None,
    selection: pd.DataFrame | None = None,
    training: pd.DataFrame | None = None,
    paired: pd.DataFrame | None = None,
    run_record: Mapping | None = None,
    reference: Mapping | None = None,
    compute: Sequence[Mapping] | None = None,
) -> Path:
    """Write ``out_dir/RESULTS.md`` and its figures under ``out_dir/figures``; return the report path.

    ``cells`` is the ``cells.csv`` table (extra columns ignored). The focus model defaults to the
    model with the most results, the heatmap condition to ``distilled`` (else the last present).
    The optional ``conditions`` (labels, roles, λ, sweeps), ``selection`` (the dev choice of λ)
    and ``training`` (per-step logs) tables add the λ Sweep and Dynamic λ sections and figures;
    ``paired`` (``paired.csv``) bolds gaps by the evidence of paired bootstrap tests and prints
    their intervals; ``run_record`` (``results/run.json``, :mod:`icldistill.runrecord`) adds
    the Run Record appendix; ``reference`` (``{"table": <reference cells>, "model": <reference
    model or None>, "source": <its name>}``, :mod:`icldistill.render.reference`) the Reference
    section; ``compute`` (rows of ``compute.csv``, :func:`icldistill.compute.read_compute`) the
    Compute section. Without them the report is the seed layout.
    """
    cells = contracts.tidy_cells(cells)
    if cells.empty:
        raise ValueError("cells table has no rows")
    conditions = None if conditions is None else contracts.tidy_conditions(conditions)
    selection = None if selection is None else contracts.tidy_selection(selection)
    training = None if training is None else contracts.tidy_training(training)
    paired = None if paired is None else contracts.tidy_paired(paired)
    focus_model, heatmap_condition = resolve_choices(cells, focus_model, heatmap_condition, conditions)
    inputs = Inputs(
        cells, focus_model, heatmap_condition, conditions, selection, training, paired, run_record, reference, compute
    )
    out_dir = Path(out_dir)
    written = {path.name for path in figures.draw_figures(inputs, out_dir / FIGURES_DIR)}
    names = figures.figure_names(heatmap_condition)
    links = {role: f"{FIGURES_DIR}/{name}" for role, name in names.items() if name in written}
    report = out_dir / REPORT_NAME
    report.write_text(render_markdown(build_context(inputs, links), template), encoding="utf-8")
    return report
