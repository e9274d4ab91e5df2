from icldistill.aggregate import score_cell
from icldistill.fingerprint import verify_input_folders
from icldistill.logs import to_file

to_file(snakemake.log[0])
verify_input_folders([snakemake.input.predictions])
w = snakemake.wildcards
meta = {
    "model": snakemake.params.display_name,
    "model_id": w.model,
    "task": w.task,
    "condition": w.condition,
    "language": w.lang,
}
score_cell(f"{snakemake.input.predictions}/{w.lang}.jsonl", snakemake.input.data, snakemake.output.metrics, meta)
