from alpacare.snake import setup
from alpacare.stages.report import make_report

setup(snakemake)
files = {tuple(key): path for key, path in zip(snakemake.params.verdict_keys, snakemake.input.verdicts)}
make_report(files, snakemake.output.csv, snakemake.output.md, snakemake.output.figure)
