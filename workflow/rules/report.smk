from icldistill import runrecord

# the run record (icldistill.runrecord): commit, package versions, model, data and config hashes
RUN_RECORD_CODE = [
    Path(workflow.basedir) / "src" / "icldistill" / "runrecord.py",
    Path(workflow.basedir) / "workflow" / "scripts" / "run_record.py",
]


rule run_record:
    """results/run.json: git commit and dirty flag of the workflow checkout, package versions,
    the hash of each model source (GGUF file, local folder's files, or hub revision), the hash
    of every local data file the grid's tasks and languages read, and the resolved config's hash.

    When it reruns: its params are the config hash, the version of the record's own code and
    the combined hash of the local data files (cheap: read once per invocation), so a changed
    config, data file or record format rewrites it, and nothing else does. The git state and
    the model hashes are the file's content, not params: a new commit, uncommitted edits or a
    model file changed in place do not by themselves rerun it (nor the report that shows it);
    --forcerun run_record refreshes them. No other rule reads these params, so no other job
    reruns for them; only render_results, which shows the record, follows it.
    """
    output:
        record=report(
            RUN_RECORD,
            caption="../../report/captions/run_record.rst",
            category="Report",
        ),
    log:
        f"{LOGS}/run_record.log",
    benchmark:
        f"{BENCH}/run_record.tsv",
    conda:
        "../../envs/report.yaml"
    params:
        workflow_dir=workflow.basedir,
        config_hash=runrecord.config_hash(config),
        code=runrecord.code_version(RUN_RECORD_CODE),
        data=lambda wildcards: runrecord.data_fingerprint(config),
    script:
        "../scripts/run_record.py"


rule render_results:
    """RESULTS.md and its figures, computed from the tables in results/tables alone."""
    input:
        cells=CELLS,
        conditions=CONDITIONS_TABLE,
        selection=SELECTION_TABLE,
        training=TRAINING_TABLE,
        paired=PAIRED_TABLE,
        compute=COMPUTE_TABLE,
        template=REPORT_TEMPLATE,
        partials=REPORT_PARTIALS,
        run_record=RUN_RECORD,
        reference=reference_table(),
    output:
        results=report(
            RESULTS_MD, caption="../../report/captions/results.rst", category="Report"
        ),
        figures=[
            report(
                FIGURE.format(name=name),
                caption=f"../../report/captions/{figure_caption(name)}",
                category="Figures",
            )
            for name in figure_names()
        ],
    log:
        f"{LOGS}/render_results.log",
    benchmark:
        f"{BENCH}/render_results.tsv",
    conda:
        "../../envs/report.yaml"
    params:
        out_dir=lambda wildcards, output: str(Path(output.results).parent),
        focus_model=lambda wc: (
            display_name(config, config["report"]["focus_model"])
            if config["report"].get("focus_model")
            else None
        ),
        heatmap_condition=config["report"].get("heatmap_condition"),
        reference_model=(config["report"].get("reference") or {}).get("model"),
        reference_name=(config["report"].get("reference") or {}).get("name"),
    script:
        "../scripts/render_results.py"
