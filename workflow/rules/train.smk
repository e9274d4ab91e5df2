rule train:
    """One training condition (SFT, or CE + λ·KD against a cached teacher) on the English
    training data of one task, or of every task in multitask mode; resumes from its last
    checkpoint."""
    input:
        unpack(training_inputs),
        model=model_input,
        downloaded=model_download,
    output:
        adapter=directory(ADAPTER),
        log_csv=report(
            TRAIN_LOG,
            caption="../../report/captions/train_log.rst",
            category="Training",
        ),
    log:
        f"{LOGS}/train/{{model}}.{{scope}}.{{condition}}.log",
    benchmark:
        f"{BENCH}/train/{{model}}.{{scope}}.{{condition}}.tsv",
    wildcard_constraints:
        condition=one_of(RUNS),
    conda:
        "../../envs/inference.yaml"
    threads: config["threads"]
    resources:
        **cluster_resources("train"),
    params:
        model_path=lambda wc: model_path(wc.model),
        model_source=model_fingerprint,
        tasks=lambda wc: scope_tasks(wc.scope),
        settings=run_settings,
        template_kwargs=chat_template_kwargs,
        trust_remote_code=lambda wc: config["models"][wc.model].get(
            "trust_remote_code", False
        ),
    script:
        "../scripts/train.py"
