from alpacare.snake import setup
from alpacare.stages.stats import describe_dataset

setup(snakemake)
o = snakemake.output
describe_dataset(snakemake.input.dataset, name=snakemake.wildcards.dataset, out_summary=o.summary, out_table=o.table,
                 out_lengths=o.lengths, out_distributions=o.distributions, top=snakemake.params.top)
