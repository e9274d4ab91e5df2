from icldistill.aggregate import seed_cell
from icldistill.logs import to_file

to_file(snakemake.log[0])
seed_cell(
    list(snakemake.input.metrics),
    list(snakemake.params.seeds),
    snakemake.wildcards.condition,
    snakemake.output.metrics,
)
