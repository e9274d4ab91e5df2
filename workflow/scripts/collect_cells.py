from icldistill.aggregate import write_cells, write_paired, write_tables
from icldistill.compute import write_compute
from icldistill.logs import to_file

to_file(snakemake.log[0])
stats = snakemake.params.stats
write_cells(
    list(snakemake.input.metrics),
    snakemake.output.cells,
    resamples=stats.get("resamples", 1000),
    seed=stats.get("seed", 0),
)
write_tables(
    snakemake.params.conditions,
    list(snakemake.input.selections),
    snakemake.params.runs,
    list(snakemake.input.train_logs),
    snakemake.output,
)
write_paired(
    list(snakemake.input.metrics),
    [tuple(pair) for pair in snakemake.params.pairs],
    snakemake.output.paired,
    resamples=stats.get("resamples", 1000),
    seed=stats.get("seed", 0),
)
write_compute(snakemake.params.compute_jobs, snakemake.output.compute)
