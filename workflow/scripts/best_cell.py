from icldistill.aggregate import best_cell
from icldistill.logs import to_file

to_file(snakemake.log[0])
best_cell(
    snakemake.input.selection,
    list(snakemake.input.test),
    snakemake.wildcards.condition,
    snakemake.output.metrics,
)
