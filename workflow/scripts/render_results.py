from icldistill.compute import read_compute
from icldistill.logs import to_file
from icldistill.render import read_cells, read_conditions, read_paired, read_selection, read_training, render_report
from icldistill.render.reference import read_reference
from icldistill.runrecord import read_record

to_file(snakemake.log[0])
# a named input from an input function: one file, or an empty list when none is configured
reference = snakemake.input.get("reference") or []
reference = [reference] if isinstance(reference, str) else list(reference)
render_report(
    read_cells(snakemake.input.cells),
    snakemake.params.out_dir,
    focus_model=snakemake.params.focus_model,
    heatmap_condition=snakemake.params.heatmap_condition,
    template=snakemake.input.template,
    conditions=read_conditions(snakemake.input.conditions),
    selection=read_selection(snakemake.input.selection),
    training=read_training(snakemake.input.training),
    paired=read_paired(snakemake.input.paired),
    run_record=read_record(snakemake.input.run_record),
    reference={
        "table": read_reference(reference[0]),
        "model": snakemake.params.reference_model,
        "source": snakemake.params.reference_name,
    }
    if reference
    else None,
    compute=read_compute(snakemake.input.get("compute")),
)
