from icldistill.aggregate import mean_over_seeds
from icldistill.logs import to_file

to_file(snakemake.log[0])
mean_over_seeds(
    list(snakemake.input.metrics),
    list(snakemake.params.seeds),
    snakemake.wildcards.condition,
    snakemake.output.metrics,
)
