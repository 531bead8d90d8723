from alpacare.snake import setup
from alpacare.stages.crossannotations import write_pairs

setup(snakemake)
write_pairs(snakemake.input[0], snakemake.params.limit, snakemake.output.output_1, snakemake.output.output_2)
