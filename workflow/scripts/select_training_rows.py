from icldistill.data import read_jsonl, write_jsonl
from icldistill.demos import read_demonstrations, training_rows
from icldistill.logs import to_file

to_file(snakemake.log[0])
p = snakemake.params
held_out = read_demonstrations(snakemake.input.demos[0]).held_out if snakemake.input.demos else set()
rows = training_rows(
    read_jsonl(snakemake.input.train), held_out, p.data["seed"], snakemake.wildcards.task, p.data["max_examples"]
)
write_jsonl(snakemake.output.rows, rows)
