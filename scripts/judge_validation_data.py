from alpacare.snake import setup
from alpacare.stages.crossannotations import fetch_crossannotations

setup(snakemake)
fetch_crossannotations(snakemake.params.source, snakemake.output[0])
