"""Semantic checks of the workflow config and the grid it describes.

The JSON schema (``config/schema/config.schema.yaml``) checks types and shapes; this module
checks what a schema cannot (ids that must exist, values that depend on each other) and
expands the grid. It imports nothing heavy, so a bad config fails in well under a second.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .hub import hub_home, model_cache
from .models import ModelError, check_installed
from .tasks import TASKS, get_task
from .train.registry import STRATEGIES
from .vocab import CONDITION_LABELS, CONDITION_LEGEND, LANGUAGES

CONDITION_KINDS = ("infer", "train")
LOSSES = ("ce", "kd")
KD_LOSSES = ("mse", "kl")
#: path segments the workflow uses itself; a model id may not shadow them
RESERVED_MODEL_IDS = ("data", "models", "tables", "figures", "logs", "benchmarks")
#: a model id names its folder ``results/<id>``: letters, digits, ``.``, ``_``, ``-``, no ``..``
MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: what huggingface_hub accepts as a repo id (``name`` or ``namespace/name``); a model ``path``
#: that is not one of these can only be a local folder
HUB_ID = re.compile(r"(\w(?:[\w.-]{0,94}\w)?/)?\w(?:[\w.-]{0,94}\w)?")
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

#: ``<condition>@lam=<λ>``: one member of a λ sweep; ``<condition>-best``: the sweep's λ chosen
#: per task on the dev split. Config condition names cannot contain ``@`` or ``-``.
SWEEP_MARK = "@lam="
BEST_SUFFIX = "-best"
#: ``<condition>@seed=<s>``: one training seed of a trained condition when ``training.seeds``
#: lists several; the condition itself then reports the mean over its seeds.
SEED_MARK = "@seed="


class ConfigError(ValueError):
    """An invalid config value; the message starts with the offending key."""


@dataclass(frozen=True)
class Cell:
    model: str
    task: str
    condition: str
    language: str


def _fail(key: str, message: str) -> None:
    raise ConfigError(f"config key '{key}': {message}")


def check_config(config: dict[str, Any], root: str | Path = ".") -> None:
    """Raise :class:`ConfigError` naming the first invalid key of ``config``."""
    _check_finite(config, "")
    models = config.get("models") or {}
    if not models:
        _fail("models", "at least one model is required")
    for mid, spec in models.items():
        if not isinstance(mid, str) or not MODEL_ID.fullmatch(mid) or ".." in mid:
            _fail(
                f"models.{mid}",
                "a model id names its folder results/<id>: use letters, digits, '.', '_' and '-' only "
                "(no path separators, no '..')",
            )
        if mid in RESERVED_MODEL_IDS:
            _fail(f"models.{mid}", f"model id may not be one of {', '.join(RESERVED_MODEL_IDS)}")
        if not isinstance(spec, dict) or ("path" in spec) == ("gguf" in spec):
            _fail(f"models.{mid}", "give exactly one of 'path' (Hugging Face id or folder) or 'gguf'")
        if "gguf" in spec:
            try:
                check_installed(spec["gguf"].get("package", ""))
            except ModelError as err:
                _fail(f"models.{mid}.gguf.package", str(err))
        else:
            _check_model_folder(mid, spec["path"], root)
        if spec.get("revision") is not None and ("gguf" in spec or (Path(root) / spec["path"]).is_dir()):
            _fail(
                f"models.{mid}.revision",
                "pins the files of a Hugging Face id; this model is a GGUF package or a folder",
            )
    names: dict[str, str] = {}
    for mid, spec in models.items():
        name = display_name(config, mid)
        if name in names:
            key = f"models.{mid}.display_name" if "display_name" in spec else f"models.{mid}"
            _fail(key, f"display name {name!r} is also model {names[name]!r}'s; display names must be unique")
        names[name] = mid
    for i, task in enumerate(config.get("tasks") or []):
        if task not in TASKS:
            _fail(f"tasks[{i}]", f"unknown task {task!r}; known: {', '.join(TASKS)}")
    if not config.get("tasks"):
        _fail("tasks", "at least one task is required")
    for i, lang in enumerate(config.get("languages") or []):
        if lang not in LANGUAGES:
            _fail(f"languages[{i}]", f"unknown language {lang!r}; known: {', '.join(LANGUAGES)}")
    if not config.get("languages"):
        _fail("languages", "at least one language is required")
    for i, task in enumerate(config["tasks"]):
        if not task_languages(config, task):
            _fail(
                f"tasks[{i}]",
                f"{task} has no data in any language of 'languages' ({', '.join(config['languages'])}), so "
                f"the grid has no {task} cell; {task} has {', '.join(get_task(task).languages)}",
            )
    conditions = config.get("conditions") or {}
    if not conditions:
        _fail("conditions", "at least one condition is required")
    for name, cond in conditions.items():
        kind = (cond or {}).get("kind")
        if kind not in CONDITION_KINDS:
            _fail(f"conditions.{name}.kind", f"unknown condition kind {kind!r}; known: {', '.join(CONDITION_KINDS)}")
        if kind == "train":
            _check_train_condition(name, cond)
        elif cond.get("sweep") or cond.get("dynamic"):
            _fail(f"conditions.{name}", "'sweep' and 'dynamic' need a trained kd condition")
    selection = config.get("selection") or {}
    for i, lang in enumerate(selection.get("languages") or []):
        if lang not in LANGUAGES:
            _fail(f"selection.languages[{i}]", f"unknown language {lang!r}; known: {', '.join(LANGUAGES)}")
    if any((c or {}).get("sweep") for c in conditions.values()):
        if (config.get("eval") or {}).get("split", "test") == "dev":
            _fail("eval.split", "a λ sweep chooses its best λ on dev, so the grid must be evaluated on test")
        for task in config.get("tasks") or []:
            if not set(selection_languages(config)) & set(get_task(task).languages):
                _fail("selection.languages", f"no selection language has {task} dev data")
    training = config.get("training") or {}
    if training.get("mode", "per_task") not in ("per_task", "multitask"):
        _fail("training.mode", f"unknown mode {training['mode']!r}; expected per_task or multitask")
    if training.get("method", "lora") not in ("lora", "full"):
        _fail("training.method", f"unknown method {training['method']!r}; expected lora or full")
    if training.get("kd_loss", "mse") not in KD_LOSSES:
        _fail("training.kd_loss", f"unknown KD loss {training['kd_loss']!r}; expected one of {', '.join(KD_LOSSES)}")
    seeds = training.get("seeds")
    if seeds is not None:
        for i, value in enumerate(seeds):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                _fail(f"training.seeds[{i}]", f"must be an integer >= 0, got {value!r}")
        if not seeds:
            _fail("training.seeds", "give at least one seed")
        if len(set(seeds)) != len(seeds):
            _fail("training.seeds", f"seeds repeat: {seeds}")
    for key in ("max_steps", "batch_size", "grad_accum"):
        if training.get(key) is not None and training[key] < 1:
            _fail(f"training.{key}", f"must be >= 1, got {training[key]}")
    if any(c.get("kind") == "train" for c in conditions.values()) and not (
        training.get("max_steps") or training.get("epochs")
    ):
        _fail("training.max_steps", "give max_steps or epochs for the training conditions")
    if (config.get("teacher") or {}).get("top_k", 1) < 1:
        _fail("teacher.top_k", f"must be >= 1, got {config['teacher']['top_k']}")
    few_shot = config.get("few_shot", {})
    if few_shot.get("k", 0) < 0:
        _fail("few_shot.k", f"must be >= 0, got {few_shot['k']}")
    for task, k in (few_shot.get("k_per_task") or {}).items():
        if task not in TASKS:
            _fail(f"few_shot.k_per_task.{task}", f"unknown task {task!r}")
        if k < 0:
            _fail(f"few_shot.k_per_task.{task}", f"must be >= 0, got {k}")
    for task, cap in ((config.get("eval") or {}).get("max_examples_per_task") or {}).items():
        if task not in TASKS:
            _fail(f"eval.max_examples_per_task.{task}", f"unknown task {task!r}")
        if cap is not None and cap < 1:
            _fail(f"eval.max_examples_per_task.{task}", f"must be >= 1 or null, got {cap}")
    for task in config.get("scoring") or {}:
        if task not in TASKS:
            _fail(f"scoring.{task}", f"unknown task {task!r}")
        if config["scoring"][task].startswith("loglik") and not get_task(task).supports_loglik:
            _fail(f"scoring.{task}", f"{config['scoring'][task]} scoring needs a label task (nli, pa)")
    for key in ("max_new_tokens", "stop"):
        for task in config.get("generation", {}).get(key) or {}:
            if task not in TASKS:
                _fail(f"generation.{key}.{task}", f"unknown task {task!r}")
    data = config.get("data", {})
    if data.get("source") == "local":
        path = Path(root) / data.get("path", "")
        if not path.is_dir():
            _fail("data.path", f"{path} is not a folder")
        _check_demonstration_pools(config, path)
    _check_data_revisions(config)
    report = config.get("report") or {}
    if report.get("focus_model") and report["focus_model"] not in models:
        _fail("report.focus_model", f"{report['focus_model']!r} is not a model of 'models'")
    if report.get("heatmap_condition") and report["heatmap_condition"] not in conditions:
        _fail("report.heatmap_condition", f"{report['heatmap_condition']!r} is not a condition of 'conditions'")
    _check_labels(config)
    if training.get("method", "lora") == "lora" and any(c.get("kind") == "train" for c in conditions.values()):
        for mid in models:
            _check_target_modules(config, mid, root)


def check_config_files(paths: list[str | Path]) -> None:
    """Raise :class:`ConfigError` for a key given twice in one mapping of a YAML (or JSON)
    config file, naming the key, the file and both lines: YAML loaders keep the last value
    silently. Files that do not parse are left to the loader that reads them."""
    import yaml

    for path in paths:
        try:
            node = yaml.compose(Path(path).read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        _check_unique_keys(node, "", str(path))


def _check_unique_keys(node: Any, key: str, path: str) -> None:
    import yaml

    if isinstance(node, yaml.MappingNode):
        lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            name = key_node.value
            child = f"{key}.{name}" if key else name
            line = key_node.start_mark.line + 1
            if name in lines:
                _fail(child, f"given twice in {path}, line {line} (first on line {lines[name]}); remove one")
            lines[name] = line
            _check_unique_keys(value_node, child, path)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_unique_keys(item, f"{key}[{i}]", path)


def _check_model_folder(mid: str, source: str, root: str | Path) -> None:
    """A ``path`` that names a local folder (it exists, or cannot be a Hugging Face id) must be a
    model folder with a ``config.json``. A Hugging Face id is not looked up (no network here)."""
    folder = Path(root) / source
    local = folder.exists() or source.startswith(("/", ".", "~")) or not _is_hub_id(source)
    if not local:
        return
    if not folder.is_dir():
        _fail(f"models.{mid}.path", f"no model folder {folder} (give a local folder or a Hugging Face id org/name)")
    if not (folder / "config.json").is_file():
        _fail(f"models.{mid}.path", f"{folder} has no config.json: not a Hugging Face model folder")


def _is_hub_id(source: str) -> bool:
    return bool(HUB_ID.fullmatch(source)) and "--" not in source and ".." not in source


def _check_data_revisions(config: dict[str, Any]) -> None:
    """``data.revision`` pins hub data sets the grid reads (a misspelt one would pin nothing)."""
    data = config.get("data") or {}
    revisions = data.get("revision") or {}
    if revisions and data.get("source") != "hf":
        _fail("data.revision", "pins data sets on the Hub; data.source is local")
    read = sorted({s.dataset for task in config.get("tasks") or [] for s in get_task(task).hf_sources.values()})
    for name in revisions:
        if name not in read:
            _fail(f"data.revision.{name}", f"the grid reads no data set {name!r}; it reads {', '.join(read)}")


def _check_labels(config: dict[str, Any]) -> None:
    """Condition labels (given, or derived as the report derives them, sweep members and seed
    runs included) name the report's rows and columns: two conditions may not share one."""
    grid = expanded(config)
    seen: dict[str, str] = {}
    for name in grid["conditions"]:
        label = condition_label(grid, name)
        if label in seen:
            origin = _configured(grid, name)
            key = f"conditions.{origin}.label" if config["conditions"][origin].get("label") else f"conditions.{origin}"
            _fail(key, f"label {label!r} of {name!r} is also the label of {seen[label]!r}; labels must be unique")
        seen[label] = name


def _configured(grid: dict[str, Any], name: str) -> str:
    """The configured condition an expanded one comes from (a sweep member's or seed run's)."""
    cond = grid["conditions"][name]
    origin = cond.get("seed_of") or cond.get("sweep_of")
    return name if origin is None else _configured(grid, origin)


def _check_demonstration_pools(config: dict[str, Any], data: Path) -> None:
    """Every demonstration draw has rows enough: k per prompt from the pool (English train, or
    with ``demonstrations: dev`` the language's dev split), and with training at least one
    English training row left after the English draw is held out. Local files only; a missing
    file is left to the data job."""
    conditions = config["conditions"]
    few_shot = config.get("few_shot") or {}
    prompts = any(c.get("kind") == "infer" and c.get("few_shot") for c in conditions.values())
    trains = any(c.get("kind") == "train" for c in conditions.values())
    resample = bool(few_shot.get("resample_per_example"))
    from_dev = few_shot.get("demonstrations", "train") == "dev"
    for task in config["tasks"]:
        k = few_shot_k(config, task)
        if k == 0:
            continue
        key = f"few_shot.k_per_task.{task}" if task in (few_shot.get("k_per_task") or {}) else "few_shot.k"
        pools: dict[Path, int] = {}  # pool file -> rows it needs
        langs = (task_languages(config, task) if prompts else []) + (["en"] if trains else [])
        for lang in langs:
            file = data / task / (f"dev.{lang}.jsonl" if from_dev else "train.en.jsonl")
            need = k + 1 if resample or (trains and not from_dev) else k
            pools[file] = max(need, pools.get(file, 0))
        for file, need in pools.items():
            rows = _count_rows(file, need)
            if rows is not None and rows < need:
                why = ""
                if need > k:
                    why = (
                        "; each example draws them from the pool without itself"
                        if resample
                        else "; the English draw is held out of training, which needs a row left"
                    )
                _fail(key, f"{k} demonstrations per prompt, but the pool {file} has {rows} rows{why}")


def _count_rows(path: Path, stop: int) -> int | None:
    """Non-blank lines of ``path``, counting no further than ``stop``; None when it is missing."""
    if not path.is_file():
        return None
    rows = 0
    with path.open("rb") as f:
        for line in f:
            rows += bool(line.strip())
            if rows >= stop:
                break
    return rows


def _model_folder(config: dict[str, Any], mid: str, root: str | Path) -> Path | None:
    """The folder whose config and weights ``mid`` is loaded from, when it is here already: a
    local folder, a GGUF model's converted folder, or a Hugging Face id's cached snapshot. None
    for a GGUF model not yet converted and a hub id not in the configured cache at its revision
    (never downloaded)."""
    spec = config["models"][mid]
    if "gguf" in spec:
        folder = Path(root) / "results" / "models" / mid
        return folder if (folder / "config.json").is_file() else None
    folder = Path(root) / spec["path"]
    if folder.is_dir():
        return folder
    if not _is_hub_id(spec["path"]):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    cache = model_cache(hub_home(config.get("hub")))
    cached = try_to_load_from_cache(spec["path"], "config.json", cache_dir=cache, revision=spec.get("revision"))
    return Path(cached).parent if isinstance(cached, str) else None


def _check_target_modules(config: dict[str, Any], mid: str, root: str | Path) -> None:
    """Every LoRA ``target_modules`` entry names a module of ``mid`` (PEFT's rule: the module's
    name, or its name's last dotted parts). Module names are read from the safetensors header or
    index (no weights loaded, no torch import: a few milliseconds); a folder without safetensors
    builds the model its config.json describes on the meta device instead (seconds). Models not
    on disk yet (a GGUF model before its conversion, a hub id not in the local cache) are not
    checked: the check never downloads anything."""
    targets = list(((config.get("training") or {}).get("lora") or {}).get("target_modules", DEFAULT_TARGETS))
    folder = _model_folder(config, mid, root)
    if folder is None or not targets:
        return
    modules = _weight_modules(folder)
    if modules is None:
        modules = _meta_modules(folder, bool(config["models"][mid].get("trust_remote_code", False)))
    if modules is None:  # transformers cannot build it from local files: the job will say why
        return
    for i, target in enumerate(targets):
        if not _has_module(modules, target):
            ends = sorted({m.rsplit(".", 1)[-1] for m in modules if not m.rsplit(".", 1)[-1].isdigit()})
            _fail(
                f"training.lora.target_modules[{i}]",
                f"model {mid!r} ({folder}) has no module {target!r}; its module names end in: {', '.join(ends)}",
            )


def _has_module(modules: set[str], target: str) -> bool:
    return target in modules or any(m.endswith("." + target) for m in modules)


def _weight_modules(folder: Path) -> set[str] | None:
    """Names of the modules that hold a stored weight and of their parents, from the safetensors
    index or header, and ``lm_head``; None without safetensors files."""
    index = folder / "model.safetensors.index.json"
    try:
        if index.is_file():
            names = list(json.loads(index.read_text(encoding="utf-8"))["weight_map"])
        elif (folder / "model.safetensors").is_file():
            with (folder / "model.safetensors").open("rb") as f:
                (size,) = struct.unpack("<Q", f.read(8))
                names = [n for n in json.loads(f.read(size)) if n != "__metadata__"]
        else:
            return None
    except (OSError, ValueError, KeyError, struct.error):
        return None
    modules = {".".join(parts[:i]) for parts in (n.split(".") for n in names) for i in range(1, len(parts))}
    # a causal LM always has its head; tied to the word embeddings it is not stored
    return modules | {"lm_head"}


def _meta_modules(folder: Path, trust_remote_code: bool) -> set[str] | None:
    """Module names of the model ``folder``'s config.json describes, built on the meta device
    (no weights, no memory); None when transformers cannot build it from local files."""
    try:
        if "auto_map" in json.loads((folder / "config.json").read_text(encoding="utf-8")):
            return None  # custom code: may need the network, and runs code
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        model_config = AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(model_config, trust_remote_code=trust_remote_code)
    except Exception:  # noqa: BLE001 - an unknown architecture is the job's to report
        return None
    return {name for name, _ in model.named_modules()}


def _check_finite(value: Any, key: str) -> None:
    """Every number in the config is finite (YAML reads ``.nan`` and ``.inf`` as floats, and
    the schema's ``type: number`` admits them)."""
    if isinstance(value, dict):
        for name, item in value.items():
            _check_finite(item, f"{key}.{name}" if key else str(name))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_finite(item, f"{key}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        _fail(key, f"must be a finite number, got {value}")


def template_kwargs(config: dict[str, Any], model: str) -> dict[str, Any]:
    """Extra ``apply_chat_template`` arguments of ``model`` (``models.<id>.chat_template_kwargs``)."""
    return dict(config["models"][model].get("chat_template_kwargs") or {})


def _check_train_condition(name: str, cond: dict[str, Any]) -> None:
    loss = cond.get("loss", "ce")
    if loss not in LOSSES:
        _fail(f"conditions.{name}.loss", f"unknown loss {loss!r}; expected one of {', '.join(LOSSES)}")
    if cond.get("few_shot"):
        _fail(f"conditions.{name}.few_shot", "trained conditions are evaluated zero-shot")
    if loss != "kd":
        for key in ("sweep", "dynamic", "lambda"):
            if key in cond:
                _fail(f"conditions.{name}.{key}", "only a kd condition has a KD weight")
    if loss == "kd":
        lam = cond.get("lambda", 0.5)
        if not isinstance(lam, (int, float)) or lam < 0:
            _fail(f"conditions.{name}.lambda", f"must be a number >= 0, got {lam!r}")
        if cond.get("dynamic") is not None:
            _check_dynamic(name, cond)
        sweep = cond.get("sweep")
        if sweep is not None:
            values = sweep.get("lambda") or []
            if not values:
                _fail(f"conditions.{name}.sweep.lambda", "give at least one λ value")
            for i, value in enumerate(values):
                if not isinstance(value, (int, float)) or value < 0:
                    _fail(f"conditions.{name}.sweep.lambda[{i}]", f"must be a number >= 0, got {value!r}")
            if len({float(v) for v in values}) != len(values):
                _fail(f"conditions.{name}.sweep.lambda", "values repeat")
        if cond.get("kd_loss", "mse") not in KD_LOSSES:
            _fail(f"conditions.{name}.kd_loss", f"unknown KD loss {cond['kd_loss']!r}; expected mse or kl")
        if cond.get("temperature", 1.0) <= 0:
            _fail(f"conditions.{name}.temperature", "must be > 0")


def _check_dynamic(name: str, cond: dict[str, Any]) -> None:
    dynamic = cond["dynamic"]
    key = f"conditions.{name}.dynamic"
    strategy = dynamic.get("strategy")
    if strategy not in STRATEGIES:
        _fail(f"{key}.strategy", f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    if "lambda" in cond or "sweep" in cond:
        _fail(f"conditions.{name}.lambda", "a dynamic condition sets its λ in its 'dynamic' block")
    spec = STRATEGIES[strategy]
    for param, value in dynamic.items():
        if param == "strategy":
            continue
        if param not in spec.defaults:
            known = ", ".join(spec.defaults)
            _fail(f"{key}.{param}", f"not a parameter of strategy {strategy!r}; known: {known}")
        if param in spec.choices:
            if value not in spec.choices[param]:
                _fail(f"{key}.{param}", f"expected {' or '.join(spec.choices[param])}, got {value!r}")
        elif not isinstance(value, (int, float)) or value < 0:
            _fail(f"{key}.{param}", f"must be a number >= 0, got {value!r}")
    failed = spec.check(strategy_params(cond))
    if failed:
        _fail(f"{key}.{failed[0]}", failed[1])


def strategy_params(cond: dict[str, Any]) -> dict[str, Any]:
    """A dynamic condition's strategy parameters, defaults filled in."""
    dynamic = dict(cond["dynamic"])
    strategy = dynamic.pop("strategy")
    return STRATEGIES[strategy].defaults | dynamic


# -- the expanded grid: sweeps and best-λ conditions ---------------------------------------------
def sweep_name(condition: str, lam: float) -> str:
    """Stable id of one sweep member, e.g. ``distilled@lam=0.05`` (``0`` and ``1.0`` → ``0``, ``1``)."""
    return f"{condition}{SWEEP_MARK}{float(lam):g}"


def best_name(condition: str) -> str:
    return f"{condition}{BEST_SUFFIX}"


def seed_name(condition: str, seed: int) -> str:
    """Id of one training seed of ``condition``, e.g. ``finetuned@seed=1``."""
    return f"{condition}{SEED_MARK}{int(seed)}"


def training_seeds(config: dict[str, Any]) -> list[int]:
    """The training seeds: ``training.seeds``, else ``[training.seed]``."""
    training = config.get("training") or {}
    return [int(s) for s in (training.get("seeds") or [training.get("seed", 0)])]


def expand_conditions(
    conditions: dict[str, dict[str, Any]], seeds: list[int] | None = None
) -> dict[str, dict[str, Any]]:
    """The grid's conditions: each configured one, followed, for a condition with
    ``sweep: {lambda: [...]}``, by one trained condition per λ (``<name>@lam=<λ>``, same
    settings otherwise) and ``<name>-best`` (the λ chosen per task on the dev split).

    With several ``seeds``, every trained condition (sweep members included) is followed by one
    run per seed (``<name>@seed=<s>``, carrying ``seed`` and ``seed_of``) and itself marked with
    ``seeds``: its cells are the mean over those runs. Idempotent: expanded members carry
    ``sweep_of``/``seed_of`` and no ``sweep``."""
    expanded: dict[str, dict[str, Any]] = {}
    for name, cond in conditions.items():
        cond = dict(cond)
        sweep = cond.pop("sweep", None)
        expanded[name] = cond
        if not sweep:
            continue
        values = sorted(float(v) for v in sweep["lambda"])
        for lam in values:
            expanded[sweep_name(name, lam)] = cond | {"lambda": lam, "sweep_of": name}
        expanded[best_name(name)] = {"kind": "best", "sweep_of": name, "lambdas": values}
    if not seeds or len(seeds) < 2:
        return expanded
    replicated: dict[str, dict[str, Any]] = {}
    for name, cond in expanded.items():
        if cond.get("kind") != "train" or "seed_of" in cond:
            replicated[name] = cond
            continue
        replicated[name] = cond | {"seeds": [int(s) for s in seeds]}
        for seed in seeds:
            if seed_name(name, seed) not in expanded:
                replicated[seed_name(name, seed)] = cond | {"seed": int(seed), "seed_of": name}
    return replicated


def expanded(config: dict[str, Any]) -> dict[str, Any]:
    """A shallow copy of ``config`` with its conditions expanded (:func:`expand_conditions`)."""
    return config | {"conditions": expand_conditions(config["conditions"], training_seeds(config))}


def sweep_members(config: dict[str, Any], condition: str) -> list[str]:
    """The sweep members of ``condition`` (``distilled`` or ``distilled-best``), by ascending λ."""
    origin = config["conditions"][condition].get("sweep_of", condition)
    return [
        name
        for name, cond in config["conditions"].items()
        if cond.get("sweep_of") == origin and cond.get("kind") == "train" and "seed_of" not in cond
    ]


def best_conditions(config: dict[str, Any]) -> list[str]:
    return [name for name, cond in config["conditions"].items() if cond.get("kind") == "best"]


def selection_languages(config: dict[str, Any], task: str | None = None) -> list[str]:
    """Dev-split languages the best λ is chosen on (default English: training is English-only,
    so choosing on English dev keeps evaluation zero-shot in the other languages)."""
    languages = list((config.get("selection") or {}).get("languages") or ["en"])
    return languages if task is None else [lang for lang in languages if lang in get_task(task).languages]


def is_trained(config: dict[str, Any], condition: str) -> bool:
    """A trained condition (evaluated zero-shot after training), with its own run or the mean
    of its seed runs."""
    return config["conditions"][condition].get("kind") == "train"


def is_run(config: dict[str, Any], condition: str) -> bool:
    """A trained condition with its own training run (not the mean over seed runs)."""
    return is_trained(config, condition) and not config["conditions"][condition].get("seeds")


def is_replicated(config: dict[str, Any], condition: str) -> bool:
    """A trained condition whose cells are the mean over its seed runs."""
    return is_trained(config, condition) and bool(config["conditions"][condition].get("seeds"))


def seed_members(config: dict[str, Any], condition: str) -> list[str]:
    """The seed runs of a replicated condition, in ``training.seeds`` order."""
    return [seed_name(condition, s) for s in config["conditions"][condition].get("seeds") or []]


def is_best(config: dict[str, Any], condition: str) -> bool:
    return config["conditions"][condition].get("kind") == "best"


def uses_teacher(config: dict[str, Any], condition: str, tasks: list[str]) -> bool:
    """Whether the run of ``condition`` on ``tasks`` reads teacher caches (a kd condition whose
    λ is not 0 for these tasks)."""
    return is_trained(config, condition) and train_settings(config, condition, tasks)["loss"] == "kd"


def teacher_shots(config: dict[str, Any], condition: str, task: str) -> int:
    """Demonstrations in the teacher prompts of a KD condition (few-shot k, or 0 for a
    zero-shot teacher)."""
    if not config["conditions"][condition].get("teacher_few_shot", True):
        return 0
    return few_shot_k(config, task)


def few_shot_k(config: dict[str, Any], task: str) -> int:
    few_shot = config.get("few_shot", {})
    return int((few_shot.get("k_per_task") or {}).get(task, few_shot.get("k", 5)))


def train_settings(config: dict[str, Any], condition: str, tasks: list[str]) -> dict[str, Any]:
    """The trainer's settings for ``condition`` trained on ``tasks`` (``TrainSettings`` fields):
    exactly what its training run depends on, so that a change reruns only this condition.

    Settings are normalised so that equal runs compare equal: a fixed λ of 0 is SFT (loss
    ``ce``), and ``task_prior`` with one λ for all of ``tasks`` is that fixed λ.
    """
    training = config.get("training") or {}
    lora = training.get("lora") or {}
    cond = config["conditions"][condition]
    settings = {
        "method": training.get("method", "lora"),
        "lora_r": lora.get("r", 8),
        "lora_alpha": lora.get("alpha", 16),
        "lora_dropout": lora.get("dropout", 0.05),
        "target_modules": list(lora.get("target_modules", DEFAULT_TARGETS)),
        "max_steps": training.get("max_steps"),
        "epochs": training.get("epochs"),
        "batch_size": training.get("batch_size", 8),
        "grad_accum": training.get("grad_accum", 1),
        "lr": training.get("lr", 2e-4),
        "weight_decay": training.get("weight_decay", 0.0),
        "warmup_steps": training.get("warmup_steps", 0),
        "max_grad_norm": training.get("max_grad_norm", 1.0),
        "pad_limit": training.get("pad_limit", 0.25),
        "bf16": training.get("bf16", True),
        "seed": int(cond.get("seed", training_seeds(config)[0])),
        "checkpoint_every": training.get("checkpoint_every", 0),
        "loss": "ce",
    }
    if cond.get("loss", "ce") != "kd":
        return settings
    lam, strategy, params = float(cond.get("lambda", 0.5)), "fixed", {}
    if cond.get("dynamic") is not None:
        strategy, params = cond["dynamic"]["strategy"], strategy_params(cond)
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
        "kd_loss": cond.get("kd_loss", training.get("kd_loss", "mse")),
        "temperature": cond.get("temperature", training.get("temperature", 1.0)),
    }
    if strategy != "fixed":
        settings |= {"strategy": strategy, "strategy_params": params}
    return settings


def run_key(config: dict[str, Any], condition: str, tasks: list[str]) -> str:
    """What the trained model of ``condition`` on ``tasks`` depends on besides the data: its
    settings and, for KD, which teacher it learns from."""
    settings = train_settings(config, condition, tasks)
    teacher = [teacher_shots(config, condition, t) for t in tasks] if settings["loss"] == "kd" else None
    return json.dumps({"settings": settings, "teacher_shots": teacher}, sort_keys=True)


def trained_run(config: dict[str, Any], condition: str, tasks: list[str]) -> str:
    """The condition whose training run (and predictions) ``condition`` uses on ``tasks``: of
    the trained conditions with the same :func:`run_key`, the first configured one, else the
    first sweep member (``distilled@lam=0`` → ``finetuned``); itself when none is identical."""
    if not is_run(config, condition):
        raise ValueError(f"{condition!r} has no training run of its own (it averages its seed runs)")
    key = run_key(config, condition, tasks)
    conditions = config["conditions"]
    for other in sorted(conditions, key=lambda c: "sweep_of" in conditions[c]):
        if is_run(config, other) and run_key(config, other, tasks) == key:
            return other
    return condition


def train_data_settings(config: dict[str, Any], task: str) -> dict[str, Any]:
    """Which English rows are trained on: the train split minus the task's demonstrations."""
    return {
        "demo_shots": few_shot_k(config, task),
        "seed": config.get("few_shot", {}).get("seed", 1234),
        "max_examples": (config.get("training") or {}).get("max_examples"),
    }


def eval_cap(config: dict[str, Any], task: str) -> int | None:
    """Evaluation rows per cell of ``task``: ``eval.max_examples_per_task`` where it names the
    task, else ``eval.max_examples`` (``None``: all)."""
    evaluation = config.get("eval") or {}
    per_task = evaluation.get("max_examples_per_task") or {}
    return per_task[task] if task in per_task else evaluation.get("max_examples")


def shots(config: dict[str, Any], condition: str, task: str) -> int:
    """Number of demonstrations in the prompts of ``condition`` for ``task``."""
    if not config["conditions"][condition].get("few_shot", False):
        return 0
    return few_shot_k(config, task)


def cells(config: dict[str, Any]) -> list[Cell]:
    """Every valid cell of the grid, in report order; invalid (task, language) pairs are skipped."""
    return [
        Cell(model, task, condition, lang)
        for model in config["models"]
        for task in config["tasks"]
        for condition in config["conditions"]
        for lang in config["languages"]
        if lang in get_task(task).languages
    ]


def task_languages(config: dict[str, Any], task: str) -> list[str]:
    """Configured languages that exist for ``task``."""
    return [lang for lang in config["languages"] if lang in get_task(task).languages]


def display_name(config: dict[str, Any], model: str) -> str:
    return config["models"][model].get("display_name", model)


# -- what the report says about each condition -----------------------------------------------------
def condition_label(config: dict[str, Any], condition: str) -> str:
    """Display label: the condition's ``label``, the vocabulary's, or one derived from its role."""
    cond = config["conditions"][condition]
    if cond.get("seed_of"):
        return f"{condition_label(config, cond['seed_of'])} (seed {cond['seed']})"
    if cond.get("label"):
        return cond["label"]
    if condition in CONDITION_LABELS:
        return CONDITION_LABELS[condition]
    origin = cond.get("sweep_of")
    if origin and cond.get("kind") == "best":
        return f"{condition_label(config, origin)} (best λ)"
    if origin:
        return f"{condition_label(config, origin)} λ={float(cond['lambda']):g}"
    if cond.get("dynamic"):
        return STRATEGIES[cond["dynamic"]["strategy"]].label
    return condition


def condition_description(config: dict[str, Any], condition: str) -> str:
    """One legend line for ``condition``."""
    cond = config["conditions"][condition]
    if cond.get("seed_of"):
        return f"{condition_label(config, cond['seed_of'])} trained with seed {cond['seed']}"
    if cond.get("description"):
        return cond["description"]
    origin = cond.get("sweep_of")
    if cond.get("kind") == "best":
        values = ", ".join(f"{v:g}" for v in cond["lambdas"])
        langs = " ".join(lang.upper() for lang in selection_languages(config))
        return f"{condition_label(config, origin)} with λ ∈ {{{values}}} chosen per task on the dev split ({langs})"
    if origin:
        return f"{condition_label(config, origin)} with λ = {float(cond['lambda']):g}"
    if cond.get("kind") == "infer" and cond.get("few_shot"):
        ks = sorted({few_shot_k(config, task) for task in config.get("tasks") or []})
        return f"{'/'.join(map(str, ks)) or 'k'}-shot in-context learning, no fine-tuning"
    if condition in CONDITION_LEGEND and not cond.get("dynamic"):
        return CONDITION_LEGEND[condition]
    if cond.get("kind") == "infer":
        return "zero-shot inference, no fine-tuning"
    if cond.get("loss", "ce") != "kd":
        return "SFT on English training data (CE loss only)"
    teacher = "few-shot" if cond.get("teacher_few_shot", True) else "zero-shot"
    if cond.get("dynamic"):
        strategy = cond["dynamic"]["strategy"]
        return (
            f"SFT + {teacher} teacher logit KD, CE + λ·KD with {STRATEGIES[strategy].describe(strategy_params(cond))}"
        )
    return f"SFT + {teacher} teacher logit KD (CE + λ·KD, λ {float(cond.get('lambda', 0.5)):g})"


def condition_rows(config: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per condition of the (expanded) grid for ``conditions.csv``: label, role
    (infer, train, sweep, best, dynamic, seed), loss, fixed λ, strategy, the swept condition, a
    legend line, the condition whose run it reuses (same for every task, else empty), and for
    several training seeds the number of seeds and the condition a seed run belongs to."""
    rows = []
    for name, cond in config["conditions"].items():
        kind = cond.get("kind")
        dynamic = (cond.get("dynamic") or {}).get("strategy", "")
        if kind == "best":
            role = "best"
        elif cond.get("seed_of"):
            role = "seed"
        elif cond.get("sweep_of"):
            role = "sweep"
        elif dynamic:
            role = "dynamic"
        else:
            role = kind
        loss = cond.get("loss", "ce") if kind == "train" else ""
        reuses = ""
        if is_run(config, name):
            runs = {trained_run(config, name, tasks) for tasks in _scopes(config)}
            reuses = runs.pop() if len(runs) == 1 else ""
        elif is_replicated(config, name):
            # the condition whose seed runs all of this one's seed runs are
            runs = {
                config["conditions"][trained_run(config, member, tasks)]["seed_of"]
                for member in seed_members(config, name)
                for tasks in _scopes(config)
            }
            reuses = runs.pop() if len(runs) == 1 else ""
        rows.append(
            {
                "condition": name,
                "label": condition_label(config, name),
                "role": role,
                "loss": loss,
                "lambda": float(cond.get("lambda", 0.5)) if loss == "kd" and not dynamic else None,
                "strategy": dynamic,
                "sweep_of": cond.get("sweep_of", ""),
                "description": condition_description(config, name),
                "reuses": "" if reuses == name else reuses,
                "seeds": len(cond.get("seeds") or []) or (1 if kind == "train" else None),
                "seed_of": cond.get("seed_of", ""),
            }
        )
    return rows


def _scopes(config: dict[str, Any]) -> list[list[str]]:
    """Task lists of the training runs: one per task, or all tasks in multitask mode."""
    if (config.get("training") or {}).get("mode", "per_task") == "multitask":
        return [list(config["tasks"])]
    return [[task] for task in config["tasks"]]


def comparisons(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(condition, reference) pairs the report compares with a paired test: every trained,
    best or dynamic condition against Fine-Tuned (sweep members are compared in their own
    section), and Distilled against Control."""
    conditions = config["conditions"]
    pairs = []
    if "finetuned" in conditions:
        pairs += [
            (name, "finetuned")
            for name, cond in conditions.items()
            if name != "finetuned"
            and cond.get("kind") in ("train", "best")
            and not _is_sweep_member(cond)
            and "seed_of" not in cond
        ]
    if "distilled" in conditions and "control" in conditions:
        pairs.append(("distilled", "control"))
    return pairs


def _is_sweep_member(cond: dict[str, Any]) -> bool:
    return bool(cond.get("sweep_of")) and cond.get("kind") == "train"
