"""Semantic checks of the workflow config and the grid it describes.

The JSON schema (``config/schema/config.schema.yaml``) checks types and shapes; this module
checks what a schema cannot (ids that must exist, values that depend on each other) and holds
the config facts the grid (:mod:`icldistill.grid`) and the rules read. It imports nothing heavy,
so a bad config fails in well under a second.
"""

from __future__ import annotations

import json
import math
import re
import struct
from pathlib import Path
from typing import Any

from .hub import hub_home, model_cache
from .models import ModelError, check_installed
from .tasks import TASKS, get_task
from .train.registry import STRATEGIES
from .vocab import LANGUAGES

#: path segments the workflow uses itself; a model id may not shadow them
RESERVED_MODEL_IDS = ("data", "models", "tables", "figures", "logs", "benchmarks")
#: a model id names its folder ``results/<id>``: letters, digits, ``.``, ``_``, ``-``, no ``..``
MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: what huggingface_hub accepts as a repo id (``name`` or ``namespace/name``); a model ``path``
#: that is not one of these can only be a local folder
HUB_ID = re.compile(r"(\w(?:[\w.-]{0,94}\w)?/)?\w(?:[\w.-]{0,94}\w)?")


class ConfigError(ValueError):
    """An invalid config value; the message starts with the offending key."""


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
    conditions = config["conditions"]
    for name, cond in conditions.items():
        if cond["kind"] == "train":
            _check_train_condition(name, cond)
        elif cond.get("sweep") or cond.get("dynamic"):
            _fail(f"conditions.{name}", "'sweep' and 'dynamic' need a trained kd condition")
    for i, lang in enumerate(config["selection"]["languages"]):
        if lang not in LANGUAGES:
            _fail(f"selection.languages[{i}]", f"unknown language {lang!r}; known: {', '.join(LANGUAGES)}")
    if any((c or {}).get("sweep") for c in conditions.values()):
        if config["eval"]["split"] == "dev":
            _fail("eval.split", "a λ sweep chooses its best λ on dev, so the grid must be evaluated on test")
        for task in config.get("tasks") or []:
            if not set(selection_languages(config)) & set(get_task(task).languages):
                _fail("selection.languages", f"no selection language has {task} dev data")
    training = config["training"]
    trains = any(c["kind"] == "train" for c in conditions.values())
    if trains and not (training["max_steps"] or training["epochs"]):
        _fail("training.max_steps", "give max_steps or epochs for the training conditions")
    for key in (
        "few_shot.k_per_task",
        "eval.max_examples_per_task",
        "scoring",
        "generation.max_new_tokens",
        "generation.stop",
    ):
        section, _, name = key.partition(".")
        for task in (config[section].get(name) if name else config[section]) or {}:
            if task not in TASKS:
                _fail(f"{key}.{task}", f"unknown task {task!r}")
    for task in config["scoring"]:
        if task not in TASKS:
            _fail(f"scoring.{task}", f"unknown task {task!r}")
        if config["scoring"][task].startswith("loglik") and not get_task(task).supports_loglik:
            _fail(f"scoring.{task}", f"{config['scoring'][task]} scoring needs a label task (nli, pa)")
    data = config["data"]
    if data.get("source") == "local":
        path = Path(root) / data.get("path", "")
        if not path.is_dir():
            _fail("data.path", f"{path} is not a folder")
        _check_demonstration_pools(config, path)
    _check_data_revisions(config)
    report = config["report"]
    if report.get("focus_model") and report["focus_model"] not in models:
        _fail("report.focus_model", f"{report['focus_model']!r} is not a model of 'models'")
    if report.get("heatmap_condition") and report["heatmap_condition"] not in conditions:
        _fail("report.heatmap_condition", f"{report['heatmap_condition']!r} is not a condition of 'conditions'")
    # labels (given, or derived, sweep members and seed runs included) name the report's rows
    from .grid import Grid  # the grid reads this module's config facts

    Grid.from_config(config).check_labels()
    if training["method"] == "lora" and trains:
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


def _check_demonstration_pools(config: dict[str, Any], data: Path) -> None:
    """Every demonstration draw has rows enough: k per prompt from the pool (English train, or
    with ``demonstrations: dev`` the language's dev split), and with training at least one
    English training row left after the English draw is held out. Local files only; a missing
    file is left to the data job."""
    conditions = config["conditions"]
    few_shot = config["few_shot"]
    prompts = any(c.get("kind") == "infer" and c.get("few_shot") for c in conditions.values())
    trains = any(c.get("kind") == "train" for c in conditions.values())
    resample = few_shot["resample_per_example"]
    from_dev = few_shot["demonstrations"] == "dev"
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
    targets = lora_targets(config)
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
    """What the schema cannot say about a trained condition: which keys go with its loss."""
    loss = cond.get("loss", "ce")
    if cond.get("few_shot"):
        _fail(f"conditions.{name}.few_shot", "trained conditions are evaluated zero-shot")
    if loss != "kd":
        for key in ("sweep", "dynamic", "lambda"):
            if key in cond:
                _fail(f"conditions.{name}.{key}", "only a kd condition has a KD weight")
        return
    if cond.get("dynamic") is not None:
        _check_dynamic(name, cond)


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


# -- config facts the grid and the rules read ---------------------------------------------------


def training_seeds(config: dict[str, Any]) -> list[int]:
    """The training seeds: ``training.seeds``, else ``[training.seed]``."""
    training = config["training"]
    return [int(s) for s in (training["seeds"] or [training["seed"]])]


def selection_languages(config: dict[str, Any], task: str | None = None) -> list[str]:
    """Dev-split languages the best λ is chosen on (default English: training is English-only,
    so choosing on English dev keeps evaluation zero-shot in the other languages)."""
    languages = list(config["selection"]["languages"])
    return languages if task is None else [lang for lang in languages if lang in get_task(task).languages]


def few_shot_k(config: dict[str, Any], task: str) -> int:
    """Demonstrations per prompt of ``task``: ``few_shot.k_per_task`` where it names the task, else ``few_shot.k``."""
    few_shot = config["few_shot"]
    return int(few_shot["k_per_task"].get(task, few_shot["k"]))


def train_data_settings(config: dict[str, Any], task: str) -> dict[str, Any]:
    """Which English rows are trained on: the train split minus the task's demonstrations."""
    return {
        "demo_shots": few_shot_k(config, task),
        "seed": config["few_shot"]["seed"],
        "max_examples": config["training"]["max_examples"],
    }


def eval_cap(config: dict[str, Any], task: str) -> int | None:
    """Evaluation rows per cell of ``task``: ``eval.max_examples_per_task`` where it names the
    task, else ``eval.max_examples`` (``None``: all)."""
    evaluation = config["eval"]
    per_task = evaluation.get("max_examples_per_task") or {}
    return per_task[task] if task in per_task else evaluation["max_examples"]


def task_languages(config: dict[str, Any], task: str) -> list[str]:
    """Configured languages that exist for ``task``."""
    return [lang for lang in config["languages"] if lang in get_task(task).languages]


def display_name(config: dict[str, Any], model: str) -> str:
    return config["models"][model].get("display_name", model)


def lora_targets(config: dict[str, Any]) -> list[str]:
    """The modules LoRA adapts (``training.lora.target_modules``)."""
    return list(config["training"]["lora"]["target_modules"])
