from alpacare.snake import setup
from alpacare.stages.usmle import make_usmle_report

setup(snakemake)
files = {tuple(key): path for key, path in zip(snakemake.params.answer_keys, snakemake.input.answers)}
make_usmle_report(files, snakemake.input.published, snakemake.output.csv, snakemake.output.md, snakemake.output.figure,
                  published_names=snakemake.params.published_names)
