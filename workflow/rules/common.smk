"""What every stage shares: config validation, path patterns, grid expansion."""

import sys
from pathlib import Path

from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from icldistill.config import ConfigError, cells, check_config, display_name, shots, task_languages
from icldistill.tasks import get_task

validate(config, schema="../../config/schema/config.schema.yaml")
try:
    check_config(config, root=Path(workflow.basedir))
except ConfigError as err:
    raise WorkflowError(str(err)) from None

MODELS = list(config["models"])
TASKS = list(config["tasks"])
CONDITIONS = list(config["conditions"])
LANGUAGES = list(config["languages"])


wildcard_constraints:
    model="|".join(MODELS),
    task="|".join(TASKS),
    condition="|".join(CONDITIONS),
    lang="|".join(LANGUAGES),
    split="train|dev|test",
    shots=r"\d+",


# -- path patterns (the only place paths are spelled) --------------------------------------
MODEL_DIR = "results/models/{model}"
DATA = "results/data/{task}/{split}.{lang}.jsonl"
DATA_MANIFEST = "results/data/{task}/{split}.{lang}.manifest.json"
# one job writes every language of a (model, task, ...) into these folders, as {lang}.json(l)
PROMPTS_DIR = "results/{model}/{task}/prompts/{shots}shot"
PREDICTIONS_DIR = "results/{model}/{task}/{condition}/predictions"
METRICS = "results/{model}/{task}/{condition}/metrics/{lang}.json"
CELLS = "results/tables/cells.csv"
RESULTS_DIR = "results"
RESULTS_MD = "results/RESULTS.md"
FIGURE = "results/figures/{name}.png"
LOGS = "results/logs"
REPORT_TEMPLATE = "report/templates/results.md.j2"


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


# -- grid ------------------------------------------------------------------------------------
def eval_split():
    return config["eval"].get("split", "test")


def condition_shots(wildcards):
    return shots(config, wildcards.condition, wildcards.task)



def languages_of(wildcards):
    return task_languages(config, wildcards.task)


def eval_data(wildcards):
    return [DATA.format(task=wildcards.task, split=eval_split(), lang=lang) for lang in languages_of(wildcards)]


def figure_names():
    """Figures the renderer draws for this grid."""
    heatmap = config.get("report", {}).get("heatmap_condition") or (
        "distilled" if "distilled" in CONDITIONS else CONDITIONS[-1]
    )
    names = ["task_bar", f"heatmap_{heatmap}"]
    if "finetuned" in CONDITIONS and ({"distilled", "control"} & set(CONDITIONS)):
        names.append("gap")
    return names


def all_metrics():
    return [
        METRICS.format(model=c.model, task=c.task, condition=c.condition, lang=c.language) for c in cells(config)
    ]


def get_final_output():
    return [RESULTS_MD, CELLS] + [FIGURE.format(name=n) for n in figure_names()]
