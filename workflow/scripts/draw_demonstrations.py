from icldistill.data import read_jsonl
from icldistill.demos import draw_demonstrations, write_demonstrations
from icldistill.logs import to_file

to_file(snakemake.log[0])
w = snakemake.wildcards
p = snakemake.params
demos = draw_demonstrations(
    read_jsonl(snakemake.input.pool),
    w.task,
    w.lang,
    int(w.shots),
    p.seed,
    p.resample,
    source=str(snakemake.input.pool),
)
write_demonstrations(snakemake.output.demos, demos)
