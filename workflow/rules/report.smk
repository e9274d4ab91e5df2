FIGURE_CAPTIONS = {"task_bar": "task_bar.rst", "gap": "gap.rst"}


rule render_results:
    """RESULTS.md and its figures, computed from cells.csv alone."""
    input:
        cells=CELLS,
        template=REPORT_TEMPLATE,
    output:
        results=report(
            RESULTS_MD, caption="../../report/captions/results.rst", category="Report"
        ),
        figures=[
            report(
                FIGURE.format(name=name),
                caption="../../report/captions/"
                + FIGURE_CAPTIONS.get(name, "heatmap.rst"),
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
