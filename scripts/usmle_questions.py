from alpacare.snake import setup
from alpacare.stages.usmle import prepare_questions

setup(snakemake)
prepare_questions(snakemake.params.source, snakemake.output.questions, snakemake.output.summary)
