from alpacare.ledger import write_tables
from alpacare.snake import setup

setup(snakemake)
write_tables(snakemake.params.ledger, snakemake.output.md, snakemake.output.csv)
