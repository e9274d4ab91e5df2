rule teacher_cache:
    """Top-K logits of the frozen base model at every answer token of the English training data,
    given {tshots} demonstrations: computed once, read by every KD run of the task."""
    input:
        model=model_input,
        downloaded=model_download,
        rows=TRAIN_ROWS,
        demos=lambda wc: demos_files(wc.task, wc.tshots, ["en"]),
    output:
        cache=TEACHER,
        stats=TEACHER_STATS,
    log:
        f"{LOGS}/teacher_cache/{{model}}.{{task}}.{{tshots}}shot.log",
    benchmark:
        f"{BENCH}/teacher_cache/{{model}}.{{task}}.{{tshots}}shot.tsv",
    conda:
        stage_env(teacher_backend())
    threads: job_threads(teacher_backend())
    resources:
        **cluster_resources("teacher"),
    params:
        model_path=lambda wc: model_path(wc.model),
        model_source=model_fingerprint,
        display_name=lambda wc: display_name(config, wc.model),
        template_kwargs=chat_template_kwargs,
        settings=teacher_settings,
    script:
        "../scripts/teacher_cache.py"
