rule collect_cells:
    """Every cell's metrics in one tidy table, with the tables the report reads beside it:
    the conditions, the λ chosen on dev per sweep, and every trained condition's per-step log.
    """
    input:
        metrics=all_metrics(),
        selections=all_selections(),
        train_logs=[
            TRAIN_LOG.format(model=m, scope=s, condition=run)
            for m, s, c, run, seed in all_trained()
        ],
    output:
        cells=report(
            CELLS,
            caption="../../report/captions/cells.rst",
            category="Tables",
        ),
        conditions=CONDITIONS_TABLE,
        selection=SELECTION_TABLE,
        training=report(
            TRAINING_TABLE,
            caption="../../report/captions/training.rst",
            category="Tables",
        ),
        paired=report(
            PAIRED_TABLE,
            caption="../../report/captions/paired.rst",
            category="Tables",
        ),
        compute=report(
            COMPUTE_TABLE,
            caption="../../report/captions/compute.rst",
            category="Tables",
        ),
    log:
        f"{LOGS}/collect_cells.log",
    benchmark:
        f"{BENCH}/collect_cells.tsv",
    conda:
        "../../envs/report.yaml"
    params:
        # benchmark records and token counts are read, not declared: every job listed is
        # upstream of this one (through the metrics and training logs) and finished before it
        compute_jobs=compute_jobs(),
        stats=config.get("stats") or {},
        pairs=GRID.comparisons(),
        conditions=GRID.rows(),
        runs=[
            {
                "model": display_name(config, m),
                "model_id": m,
                "scope": s,
                "condition": c,
                "run": run,
                "seed": seed,
            }
            for m, s, c, run, seed in all_trained()
        ],
    script:
        "../scripts/collect_cells.py"
