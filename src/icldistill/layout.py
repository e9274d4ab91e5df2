"""Where the workflow writes: the path pattern of every artifact, in one place.

Results are laid out stage first (as snakemake-workflows' rna-seq-star-deseq2 lays out its
``results/``): ``results/<stage>/...``, then the split where a stage runs on more than one,
then model, task (or training scope) and condition. The test split and the dev rows the best λ
is chosen on ("select") go through the same rules, told apart by the ``{split}`` wildcard.

``workflow/rules/common.smk`` reads these patterns; tests and :mod:`icldistill.migrate` (which
moves a results folder of the previous layout into this one) read them too.
"""

MODEL_DIR = "results/models/{model}"
# what the download stage fetched (a hub model; a hub data set config, {dataset} an org/name id)
DOWNLOADED_MODEL = "results/downloads/models/{model}.json"
DOWNLOADED_DATA = "results/downloads/data/{dataset}/{subset}.json"
DATA = "results/data/{task}/{split}.{lang}.jsonl"
DATA_MANIFEST = "results/data/{task}/{split}.{lang}.manifest.json"
# the demonstrations of a (task, language) at k shots: read by the prompt, teacher and training jobs
DEMOS = "results/data/{task}/demos/{shots}shot.{lang}.json"
# the English rows every trained condition trains on (train split minus the English demonstrations)
TRAIN_ROWS = "results/data/{task}/train_rows.en.jsonl"
# one job writes every language of a (split, model, task, ...) into these folders, as {lang}.json(l)
PROMPTS_DIR = "results/prompts/{split}/{model}/{task}/{shots}shot"
PREDICTIONS_DIR = "results/predictions/{split}/{model}/{task}/{condition}"
METRICS = "results/metrics/{split}/{model}/{task}/{condition}/{lang}.json"
TEACHER = "results/teacher/{model}/{task}/{tshots}shot.safetensors"
# the teacher job's tokens and timings (the Compute section), beside the byte-reproducible cache
TEACHER_STATS = "results/teacher/{model}/{task}/{tshots}shot.stats.json"
# trained conditions: one run per task (per_task) or one over all tasks (scope "multitask"); the
# run's checkpoints and unfinished adapter are kept beside it (adapter.checkpoints, adapter.partial)
TRAIN_DIR = "results/training/{model}/{scope}/{condition}"
ADAPTER = TRAIN_DIR + "/adapter"
TRAIN_LOG = TRAIN_DIR + "/train_log.csv"
# the best λ of a sweep, chosen on the "select" split per (model, task)
SELECTION = "results/selection/{model}/{task}/{condition}.json"
CELLS = "results/tables/cells.csv"
CONDITIONS_TABLE = "results/tables/conditions.csv"
SELECTION_TABLE = "results/tables/selection.csv"
TRAINING_TABLE = "results/tables/training.csv"
PAIRED_TABLE = "results/tables/paired.csv"
COMPUTE_TABLE = "results/tables/compute.csv"
RESULTS_MD = "results/RESULTS.md"
FIGURE = "results/figures/{name}.png"
PARTIAL_DIR = "results/partial"
#: the run record: commit, packages, config hash, machine
RUN_RECORD = "results/run.json"
LOGS = "results/logs"
#: Snakemake's benchmark record of every job (wall time, peak memory, CPU time), beside its log
BENCH = "results/benchmarks"
#: the split the best λ is chosen on: dev rows, capped at ``selection.max_examples``
SELECT_SPLIT = "select"
