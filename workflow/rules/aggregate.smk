rule collect_cells:
    """Every cell's metrics in one tidy table."""
    input:
        metrics=all_metrics(),
    output:
        cells=report(
            CELLS,
            caption="../../report/captions/cells.rst",
            category="Tables",
        ),
    log:
        f"{LOGS}/collect_cells.log",
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/collect_cells.py"
