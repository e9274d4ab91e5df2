from icldistill.aggregate import write_cells
from icldistill.logs import to_file

to_file(snakemake.log[0])
write_cells(list(snakemake.input.metrics), snakemake.output.cells)
