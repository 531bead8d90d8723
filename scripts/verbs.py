from alpacare.snake import setup
from alpacare.stages.stats import verb_breakdown

setup(snakemake)
o = snakemake.output
verb_breakdown(snakemake.input.dataset, name=snakemake.wildcards.dataset, out_table=o.table, out_summary=o.summary,
               out_figure=o.figure, models=list(snakemake.params.models), top=snakemake.params.top)
