from icldistill.logs import to_file
from icldistill.render import read_cells, read_conditions, read_paired, read_selection, read_training, render_report
from icldistill.runrecord import read_record

to_file(snakemake.log[0])
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
)
