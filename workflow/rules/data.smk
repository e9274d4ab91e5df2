rule prepare_split:
    """Load, validate and (seeded) sample one split of one task and language.

    It reruns when the file it reads changes: `data` is the SHA-256 of exactly that local
    file (<data.path>/<task>/<split>.<lang>.jsonl, dev for `select`), so an edited file reruns
    its splits and what follows, and a `touch` reruns nothing."""
    input:
        downloaded=data_download,
    output:
        rows=DATA,
        manifest=DATA_MANIFEST,
    log:
        f"{LOGS}/prepare_split/{{task}}.{{split}}.{{lang}}.log",
    benchmark:
        f"{BENCH}/prepare_split/{{task}}.{{split}}.{{lang}}.tsv",
    conda:
        "../../envs/data.yaml"
    params:
        source=config["data"],
        cap=lambda wc: split_cap(wc.task, wc.split),
        seed=config["eval"]["seed"],
        data=data_fingerprint,
    script:
        "../scripts/prepare_split.py"


rule draw_demonstrations:
    """The demonstrations of one (task, language) at k shots, drawn once (seeded) from the
    pool; every prompt, teacher and training job that needs them reads this file."""
    input:
        pool=demonstration_pool,
    output:
        demos=DEMOS,
    log:
        f"{LOGS}/draw_demonstrations/{{task}}.{{shots}}shot.{{lang}}.log",
    benchmark:
        f"{BENCH}/draw_demonstrations/{{task}}.{{shots}}shot.{{lang}}.tsv",
    wildcard_constraints:
        shots=r"[1-9]\d*",
    conda:
        "../../envs/data.yaml"
    params:
        seed=config["few_shot"]["seed"],
        resample=config["few_shot"]["resample_per_example"],
    script:
        "../scripts/draw_demonstrations.py"


rule select_training_rows:
    """The English rows every trained condition of a task trains on: the train split without
    the task's English demonstrations (no teacher sees its own answer among them), capped at
    training.max_examples (seeded)."""
    input:
        train=DATA.replace("{split}", "train").replace("{lang}", "en"),
        demos=lambda wc: demos_files(
            wc.task, train_data_settings(config, wc.task)["demo_shots"], ["en"]
        ),
    output:
        rows=TRAIN_ROWS,
    log:
        f"{LOGS}/select_training_rows/{{task}}.log",
    benchmark:
        f"{BENCH}/select_training_rows/{{task}}.tsv",
    conda:
        "../../envs/data.yaml"
    params:
        data=lambda wc: train_data_settings(config, wc.task),
    script:
        "../scripts/select_training_rows.py"
