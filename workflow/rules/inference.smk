rule infer:
    """Greedy predictions of one (split, model, task, condition) for all its languages; the
    model is loaded once per job."""
    input:
        model=model_input,
        downloaded=model_download,
        adapter=condition_adapter,
        prompts=condition_prompts,
        data=split_data,
    output:
        predictions=directory(PREDICTIONS_DIR),
    log:
        f"{LOGS}/infer/{{model}}.{{task}}.{{condition}}.{{split}}.log",
    benchmark:
        f"{BENCH}/infer/{{model}}.{{task}}.{{condition}}.{{split}}.tsv",
    wildcard_constraints:
        split=one_of(EVAL_SPLITS),
    conda:
        stage_env(config["generation"]["backend"])
    threads: job_threads(config["generation"]["backend"])
    resources:
        **cluster_resources("infer"),
    params:
        model_path=lambda wc: model_path(wc.model),
        model_source=model_fingerprint,
        languages=split_languages,
        settings=inference_settings,
    script:
        "../scripts/infer.py"
