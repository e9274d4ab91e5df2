"""What every stage shares: config validation, path patterns, grid expansion."""

import os
import re
from types import SimpleNamespace
import sys
from pathlib import Path

from snakemake.settings.types import DeploymentMethod
from snakemake.utils import validate

# Every job imports this checkout's package, never an installed icldistill (another clone's code):
# src/ leads PYTHONPATH in the environment that job processes inherit. A cluster job's own
# snakemake reads this file again, so it holds there too. The envs (envs/*.yaml) hold only
# dependencies; Snakemake unsets PYTHONPATH in them unless --conda-not-block-search-path-envvars,
# which the workflow profile (profiles/default/config.yaml) sets.
SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)
if os.environ.get("PYTHONPATH", "").split(os.pathsep)[0] != SRC:
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [SRC, os.environ.get("PYTHONPATH")])
    )


from icldistill import scheduler as _scheduler

# one pending re-evaluation timer in Snakemake's scheduler instead of one per finished job: on a
# grid waiting for cores, those timers cost the scheduler process a quarter of a core (see there)
_scheduler.install()


# declared, so that executors whose jobs do not inherit this environment pass it on
envvars:
    "PYTHONPATH",


_deployment = workflow.deployment_settings
if (
    _deployment is not None
    and DeploymentMethod.CONDA in _deployment.deployment_method
    and not _deployment.conda_not_block_search_path_envvars
):
    raise WorkflowError(
        "--sdm conda needs --conda-not-block-search-path-envvars (profiles/default/config.yaml "
        "sets it; --workflow-profile replaces that profile): without it Snakemake unsets "
        f"PYTHONPATH in the envs and the jobs cannot import {SRC}"
    )

from icldistill import fingerprint
from icldistill import params as job_params
from icldistill.cluster import declared_keys, job_resource
from icldistill.config import (
    ConfigError,
    check_config,
    check_config_files,
    display_name,
    eval_cap,
    selection_languages,
    task_languages,
    template_kwargs,
    train_data_settings,
    training_seeds,
)
from icldistill.grid import Grid
from icldistill.data import hub_source
from icldistill.hub import (
    data_cache,
    data_downloads,
    drop_stale_downloads,
    hub_home,
    is_hub_model,
    model_cache,
)

# a key given twice in one config file is an error (YAML would keep the last one silently):
# config/config.yaml and every --configfile, read again with a check for repeated keys
try:
    check_config_files(workflow.configfiles)
except ConfigError as err:
    raise WorkflowError(str(err)) from None

# --configfile files are merged over config/config.yaml key by key; a model or condition set to
# null there is removed (config/paper.yaml drops the default model this way), and so is a
# condition's key set to null (config/gemma-real.yaml drops Distilled's sweep: `sweep: null`)
for _section in ("models", "conditions"):
    if isinstance(config.get(_section), dict):
        config[_section] = {k: v for k, v in config[_section].items() if v is not None}
for _name, _cond in config.get("conditions", {}).items():
    if isinstance(_cond, dict):
        config["conditions"][_name] = {k: v for k, v in _cond.items() if v is not None}

validate(config, schema="../../config/schema/config.schema.yaml")
if (
    config["data"].get("source") == "local"
    and not Path(config["data"].get("path", "")).is_dir()
):
    # a relative data path not found in the working directory is read from the repository
    config["data"]["path"] = str(
        Path(workflow.basedir) / config["data"].get("path", "")
    )
try:
    check_config(config)
except ConfigError as err:
    raise WorkflowError(str(err)) from None
# the grid, built once: λ sweeps become one condition per value plus <name>-best, and with
# several training.seeds every trained condition one run per seed (icldistill.grid); the rules
# read each condition's role, λ, seed and parent from it, never from its name
GRID = Grid.from_config(config)

MODELS = GRID.models
TASKS = GRID.tasks
CONDITIONS = GRID.names()
LANGUAGES = GRID.languages
# data files exist for more languages than are evaluated: training rows, the teacher's
# demonstrations and the training-row hold-out always come from English train, and the best λ
# is chosen on the selection languages' dev data, whether or not they are evaluated
DATA_LANGUAGES = list(dict.fromkeys(LANGUAGES + ["en"] + selection_languages(config)))


def one_of(names):
    """A wildcard regex matching exactly ``names`` (sweep names hold ``.`` and ``=``);
    nothing at all when there are none."""
    return "|".join(re.escape(name) for name in names) or "(?!)"


wildcard_constraints:
    model=one_of(MODELS),
    task=one_of(TASKS),
    condition=one_of(CONDITIONS),
    lang=one_of(DATA_LANGUAGES),
    split="train|dev|test|select",
    shots=r"\d+",
    tshots=r"\d+",
    scope="|".join(TASKS + ["multitask"]),


# -- path patterns: spelled once, in icldistill.layout (results/<stage>/[<split>/]<model>/...) --
from icldistill.layout import (
    ADAPTER,
    BENCH,
    CELLS,
    COMPUTE_TABLE,
    CONDITIONS_TABLE,
    DATA,
    DATA_MANIFEST,
    DEMOS,
    DOWNLOADED_DATA,
    DOWNLOADED_MODEL,
    FIGURE,
    LOGS,
    METRICS,
    MODEL_DIR,
    PAIRED_TABLE,
    PARTIAL_DIR,
    PREDICTIONS_DIR,
    PROMPTS_DIR,
    RESULTS_MD,
    RUN_RECORD,
    SELECT_SPLIT,
    SELECTION,
    SELECTION_TABLE,
    TEACHER,
    TEACHER_STATS,
    TRAIN_LOG,
    TRAIN_ROWS,
    TRAINING_TABLE,
)

# the splits the prompt, inference and scoring rules run on ({split}): the evaluation split, and
# the dev rows the best λ of a sweep is chosen on
EVAL_SPLITS = list(dict.fromkeys([config["eval"]["split"], SELECT_SPLIT]))

REPORT_TEMPLATE = str(Path(workflow.basedir) / "report" / "templates" / "results.md.j2")
# the report sections' partials the template imports: an edited one re-renders the report
REPORT_PARTIALS = sorted(
    str(p)
    for p in (Path(workflow.basedir) / "report" / "templates" / "sections").glob("*.md.j2")
)


# -- what reruns a job: fingerprints of its sources, manifests of its input folders ------------
# A job whose params change reruns (Snakemake's default rerun triggers include params), and a
# fingerprint is a hash of content: an edited data file or model file reruns exactly the jobs
# that read it, a `touch` reruns nothing. Hashes are kept per (path, size, mtime, ctime) in
# .snakemake/, so a large model folder is hashed once, not on every dry run.
fingerprint.use_store(Path(".snakemake") / "icldistill" / "hashes.json")


def data_fingerprint(wildcards):
    """SHA-256 of the local file a prepare_split job reads (None for hub data)."""
    return fingerprint.data_fingerprint(
        config["data"], wildcards.task, wildcards.split, wildcards.lang
    )


def model_fingerprint(wildcards):
    """The fingerprint of the model source a job converts or loads: the GGUF file (or the
    package assembling it), the files of a local folder, or a hub id's revision."""
    return fingerprint.model_fingerprint(config["models"][wildcards.model])


# Folder outputs (directory(...)) carry a manifest written last (icldistill.fingerprint). Each
# existing one of this grid that fails it (no manifest, a file missing or of another size, or
# written after the manifest with other content) is dated to 1970 before the DAG is built, so
# Snakemake reruns the job that writes it and its dependents (a moved or removed folder would
# not rerun while what depends on it is up to date). Only in the process that plans the run (not
# in cluster jobs re-reading the Snakefile); a dry run marks them too, so that it shows the reruns.
GRID_NAMES = {
    "split": EVAL_SPLITS,
    "model": MODELS,
    "task": TASKS,
    "condition": CONDITIONS,
    "scope": TASKS + ["multitask"],
}
FOLDER_OUTPUTS = {
    MODEL_DIR: {"model": [m for m in MODELS if "gguf" in config["models"][m]]},
    PROMPTS_DIR: GRID_NAMES,
    PREDICTIONS_DIR: GRID_NAMES,
    ADAPTER: GRID_NAMES,
}
if workflow.is_main_process:
    fingerprint.mark_failing_outdated(
        folder
        for pattern, names in FOLDER_OUTPUTS.items()
        for folder in fingerprint.pattern_folders(pattern, names)
    )


# -- models ----------------------------------------------------------------------------------
def is_gguf(model):
    return "gguf" in config["models"][model]


def model_path(model):
    """Folder or Hugging Face id the jobs load ``model`` from."""
    spec = config["models"][model]
    return MODEL_DIR.format(model=model) if "gguf" in spec else spec["path"]


def model_input(wildcards):
    """The converted model folder for GGUF models (a job input), nothing for hub ids."""
    return [MODEL_DIR.format(model=wildcards.model)] if is_gguf(wildcards.model) else []


# -- Hugging Face downloads (workflow/rules/download.smk) ---------------------------------------
# Every hub model and data set config of the grid is fetched once by a local job (where
# Snakemake runs: the login node) into hub.cache_dir; the jobs that load them wait for its
# marker and read the cache offline (icldistill.hub).
HUB_HOME = hub_home(config.get("hub"))
HUB_MODELS = [m for m in MODELS if is_hub_model(config["models"][m])]
HUB_DATA = data_downloads(config["data"], TASKS, DATA_LANGUAGES)


def data_marker(download):
    return DOWNLOADED_DATA.format(dataset=download.dataset, subset=download.subset)


def download_markers():
    """Every download marker of the grid, with the cache its files are in."""
    models = {
        DOWNLOADED_MODEL.format(model=m): model_cache(HUB_HOME) for m in HUB_MODELS
    }
    data = {data_marker(d): data_cache(config["data"], HUB_HOME) for d in HUB_DATA}
    return models | data


def hub_data_of(wildcards):
    """The data set config a download_data job fetches."""
    return next(
        d
        for d in HUB_DATA
        if (d.dataset, d.subset) == (wildcards.dataset, wildcards.subset)
    )


# Jobs wait for the markers of what they load. A marker holds what was fetched (ids, revision,
# commit), and Snakemake reruns a job for a newer input only when its content changed: a download
# again of the same files reruns nothing, a branch resolved to a new commit reruns every job that
# loads it (icldistill.hub).
def model_download(wildcards):
    """The download marker of a hub model (none for local folders and GGUF packages)."""
    if wildcards.model not in HUB_MODELS:
        return []
    return [DOWNLOADED_MODEL.format(model=wildcards.model)]


def data_download(wildcards):
    """The download marker of the hub data set config a prepare_split job reads (none for
    local data)."""
    if not HUB_DATA:
        return []
    split = "dev" if wildcards.split == "select" else wildcards.split
    source = hub_source(wildcards.task, split, wildcards.lang)
    return [
        data_marker(d)
        for d in HUB_DATA
        if (d.dataset, d.name) == (source.dataset, source.config)
    ]


# a marker whose snapshot or prepared data is not in the configured cache (removed, or the cache
# moved) is removed before planning, so that `snakemake download` fetches it again
if workflow.is_main_process:
    drop_stale_downloads(download_markers())


# -- grid ------------------------------------------------------------------------------------
def eval_split():
    return config["eval"]["split"]


def split_cap(task, split):
    """Rows kept of a prepared split: the eval cap (per task where given), the selection cap,
    or all."""
    if split == eval_split():
        return eval_cap(config, task)
    if split == "select":
        return config["selection"]["max_examples"]
    return None


def condition_shots(wildcards):
    return GRID.shots(wildcards.condition, wildcards.task)


def split_languages(wildcards):
    """The languages of a (split, task): the task's evaluated languages on the evaluation
    split, the selection languages (``selection.languages``) on the select split."""
    if wildcards.split == SELECT_SPLIT:
        return selection_languages(config, wildcards.task)
    return task_languages(config, wildcards.task)


def split_data(wildcards):
    """The prepared rows of every language of a (split, task)."""
    return [
        DATA.format(task=wildcards.task, split=wildcards.split, lang=lang)
        for lang in split_languages(wildcards)
    ]


def figure_names():
    """Figures the renderer draws for this grid (names without .png)."""
    import pandas as pd
    from icldistill.render.figures import figure_files

    heatmap = config["report"].get("heatmap_condition")
    files = figure_files(pd.DataFrame(GRID.rows()), heatmap, len(MODELS))
    return [name.removesuffix(".png") for name in files]


def figure_caption(name):
    """The report caption of a figure (every heatmap_<condition> shares one)."""
    return "heatmap.rst" if name.startswith("heatmap_") else f"{name}.rst"


def all_metrics():
    return [
        METRICS.format(
            split=eval_split(),
            model=c.model,
            task=c.task,
            condition=c.condition,
            lang=c.language,
        )
        for c in GRID.cells()
    ]


def reference_table():
    """The Reference section's table (``report.reference.path``): as given when it exists from
    the working directory, else from the workflow's folder (the shipped seed numbers); nothing
    when no reference is configured."""
    reference = config["report"].get("reference") or {}
    if not reference.get("path"):
        return []
    path = Path(reference["path"])
    shipped = Path(workflow.basedir) / path
    if path.exists() or path.is_absolute() or not shipped.exists():
        return [str(path)]
    return [str(shipped)]


def get_final_output():
    return [RESULTS_MD, CELLS] + [FIGURE.format(name=n) for n in figure_names()]


def demonstration_pool(wildcards):
    """The rows demonstrations are drawn from: English train (default) or same-language dev."""
    if config["few_shot"]["demonstrations"] == "dev":
        return DATA.format(task=wildcards.task, split="dev", lang=wildcards.lang)
    return DATA.format(task=wildcards.task, split="train", lang="en")


def demos_files(task, shots, languages):
    """The demonstrations files of ``languages`` at ``shots`` (none for zero-shot)."""
    if int(shots) == 0:
        return []
    return [DEMOS.format(task=task, shots=shots, lang=lang) for lang in languages]


def prompt_demos(languages_fn):
    """Input function: the demonstrations of every language of a prompt job."""

    def inputs(wildcards):
        return demos_files(wildcards.task, wildcards.shots, languages_fn(wildcards))

    return inputs


def chat_template_kwargs(wildcards):
    return template_kwargs(config, wildcards.model)


def context_length(wildcards):
    """``models.<model>.context_length``; None: the model config's own."""
    return config["models"][wildcards.model].get("context_length")


def answer_budget(wildcards):
    """``generation.max_new_tokens.<task>``; None: the task's own budget."""
    return config["generation"]["max_new_tokens"].get(wildcards.task)


def condition_prompts(wildcards):
    return PROMPTS_DIR.format(
        split=wildcards.split,
        model=wildcards.model,
        task=wildcards.task,
        shots=condition_shots(wildcards),
    )


def inference_settings(wildcards):
    """Exactly the settings predictions depend on (a change reruns only affected jobs)."""
    return job_params.inference_settings(config, wildcards.model, wildcards.task)


# -- training --------------------------------------------------------------------------------
# conditions with their own training run, and those reporting the mean over their seed runs
RUNS = [c.name for c in GRID if c.has_run]
REPLICATED = [c.name for c in GRID if c.replicated]
SEED_RUNS = GRID.names("seed")
TRAINING_MODE = config["training"]["mode"]


def scope_tasks(scope):
    return TASKS if scope == "multitask" else [scope]


def train_scope(task):
    return "multitask" if TRAINING_MODE == "multitask" else task


def run_settings(wildcards):
    return GRID.train_settings(wildcards.condition, scope_tasks(wildcards.scope))


def training_inputs(wildcards):
    """English train data of the scope's tasks and, for KD, their teacher caches; English dev
    data for the meta-λ strategy's look-ahead batches."""
    tasks = scope_tasks(wildcards.scope)
    inputs = {"train": [TRAIN_ROWS.format(task=t) for t in tasks]}
    settings = run_settings(wildcards)
    if settings["loss"] == "kd":
        inputs["teacher"] = [
            TEACHER.format(
                model=wildcards.model,
                task=t,
                tshots=GRID.teacher_shots(wildcards.condition, t),
            )
            for t in tasks
        ]
    if settings.get("strategy") == "meta":
        inputs["dev"] = [DATA.format(task=t, split="dev", lang="en") for t in tasks]
    return inputs


def run_of(wildcards):
    """The condition whose predictions ``wildcards.condition`` uses: itself, or for a trained
    condition the first one with an identical run (``distilled@lam=0`` → ``finetuned``).
    """
    if not GRID[wildcards.condition].has_run:
        return wildcards.condition
    return GRID.trained_run(
        wildcards.condition, scope_tasks(train_scope(wildcards.task))
    )


def all_trained():
    """(model, scope, condition, run, seed) of every training run a trained condition of the
    report uses: ``run`` is the condition whose run it is (itself, an identical earlier one, or
    with several seeds one per seed), so each run is trained once."""
    scopes = ["multitask"] if TRAINING_MODE == "multitask" else TASKS
    reported = [c for c in GRID.reported() if GRID[c].trained]
    return [
        (m, scope, c, GRID.trained_run(member, scope_tasks(scope)), seed)
        for m in MODELS
        for scope in scopes
        for c in reported
        for member, seed in (
            zip(GRID.seed_members(c), GRID[c].seeds)
            if GRID[c].replicated
            else [(c, training_seeds(config)[0])]
        )
    ]


def replicate_metrics(wildcards):
    """The metrics of every seed run of ``wildcards.condition`` (same split and cell)."""
    return [
        METRICS.format(
            split=wildcards.split,
            model=wildcards.model,
            task=wildcards.task,
            condition=member,
            lang=wildcards.lang,
        )
        for member in GRID.seed_members(wildcards.condition)
    ]


def condition_adapter(wildcards):
    """The trained adapter a trained condition is evaluated with (nothing for inference-only ones)."""
    if not GRID[wildcards.condition].has_run:
        return []
    return [
        ADAPTER.format(
            model=wildcards.model,
            scope=train_scope(wildcards.task),
            condition=wildcards.condition,
        )
    ]


def condition_predictions(wildcards):
    return PREDICTIONS_DIR.format(
        split=wildcards.split,
        model=wildcards.model,
        task=wildcards.task,
        condition=run_of(wildcards),
    )


# -- best λ of a sweep, chosen on the dev split ----------------------------------------------
BEST = GRID.names("best")


def sweep_metrics(wildcards, split, languages):
    """Metrics on ``split`` of every sweep member of the best condition ``wildcards.condition``."""
    return [
        METRICS.format(
            split=split,
            model=wildcards.model,
            task=wildcards.task,
            condition=c,
            lang=lang,
        )
        for c in GRID.sweep_members(wildcards.condition)
        for lang in languages
    ]


def all_selections():
    return [
        SELECTION.format(model=m, task=t, condition=b)
        for m in MODELS
        for t in TASKS
        for b in BEST
    ]


def teacher_backend():
    return job_params.teacher_backend(config)


def teacher_settings(wildcards):
    return job_params.teacher_settings(config, wildcards.model)


def job_threads(backend="hf"):
    """CPU threads of a model job: ``threads`` (default 1, so that a CPU runs jobs side by side,
    which keeps its cores busier than one job with all of them); a vLLM engine takes the machine
    (8, capped at --cores): two engines side by side would split one GPU's memory or a CPU's
    cores between them."""
    return 8 if backend == "vllm" else config["threads"]


def stage_env(backend):
    """The conda env of an inference or teacher job (used with --use-conda)."""
    return "../../envs/vllm.yaml" if backend == "vllm" else "../../envs/inference.yaml"


# -- cluster resources -------------------------------------------------------------------------
def _resource(stage, key):
    def value(wildcards, attempt):
        return job_resource(config, wildcards.model, stage, key, attempt)

    return value


def cluster_resources(stage):
    """SLURM requests of a ``stage`` job (``cluster`` and ``models.<name>.cluster`` in the
    config), memory and runtime growing with each retry; ignored by local runs."""
    return {key: _resource(stage, key) for key in declared_keys(config, stage)}


# -- failed runs -------------------------------------------------------------------------------
def out_of_date(paths):
    """The files of ``paths`` that exist although the DAG says the job making them had to run
    and did not finish (a changed setting or input upstream, then a failure): stale, whatever
    they hold. Empty when no DAG was built."""
    dag = workflow.dag
    if dag is None:
        return []
    wanted = {str(p) for p in paths}
    return [
        str(f)
        for job in dag.needrun_jobs(exclude_finished=True)
        for f in job.output
        if str(f) in wanted and Path(f).exists()
    ]


def partial_report():
    """Render the finished cells of a failed run (``--keep-going``) to results/partial/; cells
    that exist but are out of date show as stale."""
    from icldistill.aggregate import render_partial

    metrics = all_metrics()
    try:
        expected = [
            (display_name(config, c.model), c.model, c.task, c.condition, c.language)
            for c in GRID.cells()
        ]
        rendered = render_partial(
            metrics,
            PARTIAL_DIR,
            expected,
            template=REPORT_TEMPLATE,
            conditions=GRID.rows(),
            stale=out_of_date(metrics),
        )
    except Exception as err:  # never mask the run's own error
        print(f"partial report not written: {err}", file=sys.stderr)
        return
    if rendered is not None:
        path, done, stale = rendered
        print(
            f"{done} of {len(metrics)} cells finished, {stale} stale (older settings or inputs; "
            f"shown as stale, not as results); partial report: {path}",
            file=sys.stderr,
        )


# -- compute: the heavy jobs of the grid and what each serves ------------------------------
def compute_jobs():
    """Every model-conversion, inference, teacher and training job of the grid: its rule,
    benchmark record, the file holding its token count, and the reported conditions it serves
    (icldistill.compute reads them into results/tables/compute.csv)."""
    jobs = {}

    def add(rule, benchmark, artifact, serves, **fields):
        job = jobs.setdefault(
            benchmark,
            {"rule": rule, "benchmark": benchmark, "artifact": artifact, "conditions": []}
            | fields,
        )
        if serves not in job["conditions"]:
            job["conditions"].append(serves)

    pairs = list(dict.fromkeys((c.model, c.task) for c in GRID.cells()))
    reported = GRID.reported()
    for m in MODELS:
        if is_gguf(m):
            for c in reported:
                add(
                    "convert_gguf_model",
                    f"{BENCH}/convert_gguf_model/{m}.tsv",
                    None,
                    c,
                    model=display_name(config, m),
                )
    for m, t in pairs:
        for c in reported:
            members = GRID.seed_members(c) if c in REPLICATED else [c]
            if c in BEST:
                members = GRID.sweep_members(c)
            for member in members:
                wc = SimpleNamespace(task=t, condition=member)
                run = run_of(wc)
                add(
                    "infer",
                    f"{BENCH}/infer/{m}.{t}.{run}.{eval_split()}.tsv",
                    PREDICTIONS_DIR.format(
                        split=eval_split(), model=m, task=t, condition=run
                    ),
                    c,
                    model=display_name(config, m),
                    task=t,
                    condition=run,
                )
    for m, scope, c, run, seed in all_trained():
        add(
            "train",
            f"{BENCH}/train/{m}.{scope}.{run}.tsv",
            ADAPTER.format(model=m, scope=scope, condition=run),
            c,
            model=display_name(config, m),
            task=scope,
            condition=run,
        )
        if GRID.uses_teacher(run, scope_tasks(scope)):
            for t in scope_tasks(scope):
                k = GRID.teacher_shots(run, t)
                add(
                    "teacher_cache",
                    f"{BENCH}/teacher_cache/{m}.{t}.{k}shot.tsv",
                    TEACHER_STATS.format(model=m, task=t, tshots=k),
                    c,
                    model=display_name(config, m),
                    task=t,
                    condition=f"{k}-shot teacher",
                )
    return list(jobs.values())
