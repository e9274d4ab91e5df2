rule render_results:
    """RESULTS.md and its figures, computed from the tables in results/tables alone."""
    input:
        cells=CELLS,
        conditions=CONDITIONS_TABLE,
        selection=SELECTION_TABLE,
        training=TRAINING_TABLE,
        paired=PAIRED_TABLE,
        template=REPORT_TEMPLATE,
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
    conda:
        "../../envs/report.yaml"
    params:
        out_dir=lambda wildcards, output: str(Path(output.results).parent),
        focus_model=lambda wc: (
            display_name(config, config["report"]["focus_model"])
            if config.get("report", {}).get("focus_model")
            else None
        ),
        heatmap_condition=config.get("report", {}).get("heatmap_condition"),
    script:
        "../scripts/render_report.py"
