"""The grid a config describes, built once: typed conditions and the cells they fill.

:meth:`Grid.from_config` expands the configured conditions (a λ sweep into one member per value
and a best-λ condition; several ``training.seeds`` into one run per seed) into frozen
:class:`Condition` objects that carry their role, λ or strategy, seed and the condition they
derive from. The rules, the aggregation and the report read these fields (``conditions.csv`` is
written from :meth:`Grid.rows`); nothing recovers a role from a condition's name, and the config
itself is never edited.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .config import (
    ConfigError,
    few_shot_k,
    lora_targets,
    selection_languages,
    strategy_params,
    task_languages,
    training_seeds,
)
from .tasks import get_task
from .train.registry import STRATEGIES
from .vocab import CONDITION_LABELS, CONDITION_LEGEND

#: ``training`` keys a run's settings copy as they are (``TrainSettings`` fields of the same name)
RUN_KEYS = (
    "max_steps",
    "epochs",
    "batch_size",
    "grad_accum",
    "lr",
    "weight_decay",
    "warmup_steps",
    "max_grad_norm",
    "pad_limit",
    "bf16",
)

#: A condition's role in the grid (``conditions.csv``'s ``role`` column).
ROLES = ("infer", "train", "sweep", "best", "dynamic", "seed")


@dataclass(frozen=True)
class Cell:
    model: str
    task: str
    condition: str
    language: str


@dataclass(frozen=True)
class Condition:
    """One condition of the grid.

    ``settings`` are its configured keys (``loss``, ``lambda``, ``dynamic``, ``teacher_few_shot``,
    ...; a sweep member's ``lambda`` is its value). ``sweep_of`` names the condition whose λ sweep
    it is a member of (or whose best λ it reports), ``seed_of`` the condition it is one training
    seed of; ``seeds`` are the seeds of a condition that reports the mean of its seed runs, and
    ``lambdas`` a best-λ condition's candidates.
    """

    name: str
    kind: str  # infer | train | best
    settings: Mapping[str, Any] = field(default_factory=dict, hash=False)
    sweep_of: str = ""
    seed_of: str = ""
    seed: int | None = None
    seeds: tuple[int, ...] = ()
    lambdas: tuple[float, ...] = ()

    @property
    def role(self) -> str:
        """One of :data:`ROLES`."""
        if self.kind == "best":
            return "best"
        if self.seed_of:
            return "seed"
        if self.sweep_of:
            return "sweep"
        return "dynamic" if self.strategy else self.kind

    @property
    def trained(self) -> bool:
        """Evaluated zero-shot after training (with a run of its own or the mean of its seed runs)."""
        return self.kind == "train"

    @property
    def has_run(self) -> bool:
        """A trained condition with its own training run (not the mean over seed runs)."""
        return self.trained and not self.seeds

    @property
    def replicated(self) -> bool:
        """A trained condition whose cells are the mean over its seed runs."""
        return self.trained and bool(self.seeds)

    @property
    def few_shot(self) -> bool:
        """Prompts with demonstrations (inference conditions only)."""
        return bool(self.settings.get("few_shot", False))

    @property
    def loss(self) -> str:
        """``ce`` or ``kd`` for trained conditions; empty otherwise."""
        return self.settings.get("loss", "ce") if self.trained else ""

    @property
    def strategy(self) -> str:
        """The dynamic-λ strategy; empty for a fixed λ."""
        return (self.settings.get("dynamic") or {}).get("strategy", "")

    @property
    def lam(self) -> float | None:
        """The fixed λ of a kd condition; None for SFT, inference and dynamic λ."""
        if self.loss != "kd" or self.strategy:
            return None
        return float(self.settings.get("lambda", 0.5))

    @property
    def params(self) -> dict[str, Any]:
        """The strategy's parameters, defaults filled in (empty for a fixed λ)."""
        return strategy_params(self.settings) if self.strategy else {}

    @property
    def teacher_few_shot(self) -> bool:
        return bool(self.settings.get("teacher_few_shot", True))


def _expand(conditions: Mapping[str, Mapping[str, Any]], seeds: list[int]) -> dict[str, Condition]:
    """Each configured condition, followed, for one with ``sweep: {lambda: [...]}``, by one
    trained member per λ (``<name>@lam=<λ>``, same settings otherwise) and ``<name>-best``; with
    several ``seeds``, every trained condition (sweep members included) marked with them and
    followed by one run per seed (``<name>@seed=<s>``)."""
    expanded: dict[str, Condition] = {}
    for name, configured in conditions.items():
        settings = {k: v for k, v in configured.items() if k not in ("kind", "sweep")}
        expanded[name] = Condition(name, configured["kind"], MappingProxyType(settings))
        sweep = configured.get("sweep")
        if not sweep:
            continue
        values = sorted(float(v) for v in sweep["lambda"])
        for lam in values:
            member = sweep_name(name, lam)
            expanded[member] = Condition(member, "train", MappingProxyType(settings | {"lambda": lam}), sweep_of=name)
        expanded[best_name(name)] = Condition(best_name(name), "best", sweep_of=name, lambdas=tuple(values))
    if len(seeds) < 2:
        return expanded
    replicated: dict[str, Condition] = {}
    for name, cond in expanded.items():
        if not cond.trained:
            replicated[name] = cond
            continue
        replicated[name] = Condition(name, cond.kind, cond.settings, sweep_of=cond.sweep_of, seeds=tuple(seeds))
        for seed in seeds:
            run = seed_name(name, seed)
            replicated[run] = Condition(run, cond.kind, cond.settings, cond.sweep_of, seed_of=name, seed=seed)
    return replicated


def sweep_name(condition: str, lam: float) -> str:
    """Id of one sweep member, e.g. ``distilled@lam=0.05`` (``0`` and ``1.0`` → ``0``, ``1``)."""
    return f"{condition}@lam={float(lam):g}"


def best_name(condition: str) -> str:
    """Id of a sweep's best-λ condition, e.g. ``distilled-best``."""
    return f"{condition}-best"


def seed_name(condition: str, seed: int) -> str:
    """Id of one training seed of ``condition``, e.g. ``finetuned@seed=1``."""
    return f"{condition}@seed={int(seed)}"


@dataclass(frozen=True)
class Grid:
    """Models × tasks × conditions × languages of one (validated) config."""

    config: Mapping[str, Any] = field(hash=False)
    conditions: Mapping[str, Condition] = field(hash=False)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Grid:
        """The grid of ``config`` (checked by :func:`icldistill.config.check_config`)."""
        return cls(config, MappingProxyType(_expand(config["conditions"], training_seeds(config))))

    def __getitem__(self, name: str) -> Condition:
        return self.conditions[name]

    def __iter__(self) -> Iterator[Condition]:
        return iter(self.conditions.values())

    @property
    def models(self) -> list[str]:
        return list(self.config["models"])

    @property
    def tasks(self) -> list[str]:
        return list(self.config["tasks"])

    @property
    def languages(self) -> list[str]:
        return list(self.config["languages"])

    def names(self, *roles: str) -> list[str]:
        """Condition ids in grid order, only those of ``roles`` when given."""
        return [c.name for c in self if not roles or c.role in roles]

    def cells(self) -> list[Cell]:
        """Every valid cell, in report order; (task, language) pairs without data are skipped."""
        return [
            Cell(model, task, cond, lang)
            for model in self.models
            for task in self.tasks
            for cond in self.conditions
            for lang in task_languages(self.config, task)
        ]

    def reported(self) -> list[str]:
        """Conditions with cells in the report (every one but single seed runs)."""
        return [c.name for c in self if c.role != "seed"]

    def sweep_members(self, name: str) -> list[str]:
        """The members of the λ sweep of ``name`` (the swept or the best-λ condition), by ascending λ."""
        origin = self[name].sweep_of or name
        return [c.name for c in self if c.sweep_of == origin and c.kind == "train" and not c.seed_of]

    def seed_members(self, name: str) -> list[str]:
        """The seed runs of a replicated condition, in ``training.seeds`` order."""
        return [seed_name(name, s) for s in self[name].seeds]

    def scopes(self) -> list[list[str]]:
        """Task lists of the training runs: one per task, or all tasks in multitask mode."""
        if self.config["training"]["mode"] == "multitask":
            return [self.tasks]
        return [[task] for task in self.tasks]

    # -- prompts and teachers ------------------------------------------------------------------
    def shots(self, name: str, task: str) -> int:
        """Demonstrations in the prompts of ``name`` for ``task``."""
        return few_shot_k(self.config, task) if self[name].few_shot else 0

    def teacher_shots(self, name: str, task: str) -> int:
        """Demonstrations in the teacher prompts of a KD condition (few-shot k, or 0 for a
        zero-shot teacher)."""
        return few_shot_k(self.config, task) if self[name].teacher_few_shot else 0

    # -- training runs -----------------------------------------------------------------------
    def train_settings(self, name: str, tasks: list[str]) -> dict[str, Any]:
        """The trainer's settings for ``name`` trained on ``tasks`` (``TrainSettings`` fields):
        exactly what its training run depends on, so that a change reruns only this condition.

        Settings are normalised so that equal runs compare equal: a fixed λ of 0 is SFT (loss
        ``ce``), and ``task_prior`` with one λ for all of ``tasks`` is that fixed λ.
        """
        training = self.config["training"]
        lora = training["lora"]
        cond = self[name]
        settings = {
            "method": training["method"],
            "lora_r": lora["r"],
            "lora_alpha": lora["alpha"],
            "lora_dropout": lora["dropout"],
            "target_modules": lora_targets(self.config),
            **{key: training[key] for key in RUN_KEYS},
            "seed": cond.seed if cond.seed is not None else training_seeds(self.config)[0],
            "checkpoint_every": training["checkpoint_every"],
            "loss": "ce",
        }
        if cond.loss != "kd":
            return settings
        lam, strategy, params = float(cond.settings.get("lambda", 0.5)), cond.strategy or "fixed", cond.params
        if strategy == "task_prior":
            lambdas = {task: float(params[get_task(task).family]) for task in tasks}
            if len(set(lambdas.values())) == 1:
                strategy, params, lam = "fixed", {}, next(iter(lambdas.values()))
            else:
                params = {"lambdas": lambdas}
        if strategy == "fixed" and lam == 0:
            return settings
        settings |= {
            "loss": "kd",
            "lam": lam if strategy == "fixed" else 0.0,
            "kd_loss": cond.settings.get("kd_loss", training["kd_loss"]),
            "temperature": cond.settings.get("temperature", training["temperature"]),
        }
        if strategy != "fixed":
            settings |= {"strategy": strategy, "strategy_params": params}
        return settings

    def uses_teacher(self, name: str, tasks: list[str]) -> bool:
        """Whether the run of ``name`` on ``tasks`` reads teacher caches (a kd condition whose λ
        is not 0 for these tasks)."""
        return self[name].trained and self.train_settings(name, tasks)["loss"] == "kd"

    def run_key(self, name: str, tasks: list[str]) -> str:
        """What the trained model of ``name`` on ``tasks`` depends on besides the data: its
        settings and, for KD, which teacher it learns from."""
        settings = self.train_settings(name, tasks)
        teacher = [self.teacher_shots(name, t) for t in tasks] if settings["loss"] == "kd" else None
        return json.dumps({"settings": settings, "teacher_shots": teacher}, sort_keys=True)

    def trained_run(self, name: str, tasks: list[str]) -> str:
        """The condition whose training run (and predictions) ``name`` uses on ``tasks``: of the
        conditions with a run and the same :meth:`run_key`, the first configured one, else the
        first sweep member (``distilled@lam=0`` → ``finetuned``); itself when none is identical."""
        if not self[name].has_run:
            raise ValueError(f"{name!r} has no training run of its own (it averages its seed runs)")
        key = self.run_key(name, tasks)
        for other in sorted(self.conditions, key=lambda c: bool(self[c].sweep_of)):
            if self[other].has_run and self.run_key(other, tasks) == key:
                return other
        return name

    # -- what the report says about each condition -------------------------------------------
    def label(self, name: str) -> str:
        """Display label: the condition's ``label``, the vocabulary's, or one derived from its role."""
        cond = self[name]
        if cond.seed_of:
            return f"{self.label(cond.seed_of)} (seed {cond.seed})"
        if cond.settings.get("label"):
            return cond.settings["label"]
        if name in CONDITION_LABELS:
            return CONDITION_LABELS[name]
        if cond.kind == "best":
            return f"{self.label(cond.sweep_of)} (best λ)"
        if cond.sweep_of:
            return f"{self.label(cond.sweep_of)} λ={cond.lam:g}"
        if cond.strategy:
            return STRATEGIES[cond.strategy].label
        return name

    def description(self, name: str) -> str:
        """One legend line for ``name``."""
        cond = self[name]
        if cond.seed_of:
            return f"{self.label(cond.seed_of)} trained with seed {cond.seed}"
        if cond.settings.get("description"):
            return cond.settings["description"]
        if cond.kind == "best":
            values = ", ".join(f"{v:g}" for v in cond.lambdas)
            langs = " ".join(lang.upper() for lang in selection_languages(self.config))
            return f"{self.label(cond.sweep_of)} with λ ∈ {{{values}}} chosen per task on the dev split ({langs})"
        if cond.sweep_of:
            return f"{self.label(cond.sweep_of)} with λ = {cond.lam:g}"
        if cond.kind == "infer" and cond.few_shot:
            ks = sorted({few_shot_k(self.config, task) for task in self.tasks})
            return f"{'/'.join(map(str, ks)) or 'k'}-shot in-context learning, no fine-tuning"
        if name in CONDITION_LEGEND and not cond.strategy:
            return CONDITION_LEGEND[name]
        if cond.kind == "infer":
            return "zero-shot inference, no fine-tuning"
        if cond.loss != "kd":
            return "SFT on English training data (CE loss only)"
        teacher = "few-shot" if cond.teacher_few_shot else "zero-shot"
        if cond.strategy:
            return f"SFT + {teacher} teacher logit KD, CE + λ·KD with {STRATEGIES[cond.strategy].describe(cond.params)}"
        return f"SFT + {teacher} teacher logit KD (CE + λ·KD, λ {cond.lam:g})"

    def reuses(self, name: str) -> str:
        """The condition whose training run ``name`` uses for every task (for a replicated one:
        whose seed runs its seed runs are); empty when that is itself or differs by task."""
        cond = self[name]
        if cond.has_run:
            runs = {self.trained_run(name, tasks) for tasks in self.scopes()}
        elif cond.replicated:
            runs = {
                self[self.trained_run(member, tasks)].seed_of
                for member in self.seed_members(name)
                for tasks in self.scopes()
            }
        else:
            return ""
        run = runs.pop() if len(runs) == 1 else ""
        return "" if run == name else run

    def rows(self) -> list[dict[str, Any]]:
        """One row per condition for ``conditions.csv``: label, role, loss, fixed λ, strategy,
        the swept condition, a legend line, the condition whose run it reuses, and for several
        training seeds the number of seeds and the condition a seed run belongs to."""
        return [
            {
                "condition": c.name,
                "label": self.label(c.name),
                "role": c.role,
                "loss": c.loss,
                "lambda": c.lam,
                "strategy": c.strategy,
                "sweep_of": c.sweep_of,
                "description": self.description(c.name),
                "reuses": self.reuses(c.name),
                "seeds": len(c.seeds) or (1 if c.trained else None),
                "seed_of": c.seed_of,
            }
            for c in self
        ]

    def comparisons(self) -> list[tuple[str, str]]:
        """(condition, reference) pairs the report compares with a paired test
        (``report.comparisons``): every trained, best-λ and dynamic condition against
        ``reference`` (sweep members are compared in their own section, seed runs through their
        mean), then the listed ``pairs``; pairs naming a condition the grid lacks are skipped."""
        compare = self.config["report"]["comparisons"]
        reference = compare["reference"]
        pairs = []
        if reference in self.conditions:
            pairs += [
                (c.name, reference) for c in self if c.name != reference and c.role in ("train", "best", "dynamic")
            ]
        pairs += [(a, b) for a, b in compare["pairs"] if a in self.conditions and b in self.conditions]
        return pairs

    def check_labels(self) -> None:
        """Raise :class:`ConfigError` when two conditions (sweep members and seed runs included)
        share a label: labels name the report's rows and columns."""
        seen: dict[str, str] = {}
        for cond in self:
            label = self.label(cond.name)
            if label in seen:
                origin = cond
                while origin.seed_of or origin.sweep_of:  # the configured condition it comes from
                    origin = self[origin.seed_of or origin.sweep_of]
                given = self.config["conditions"][origin.name].get("label")
                key = f"conditions.{origin.name}.label" if given else f"conditions.{origin.name}"
                raise ConfigError(
                    f"config key '{key}': label {label!r} of {cond.name!r} is also the label of "
                    f"{seen[label]!r}; labels must be unique"
                )
            seen[label] = cond.name
