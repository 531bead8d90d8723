from alpacare.snake import setup
from alpacare.stages.judgevalidation import write_validation

setup(snakemake)
write_validation(
    snakemake.wildcards.judge, snakemake.input.verdicts, snakemake.input.crossannotations, snakemake.input.output_1,
    published=snakemake.input.published, source=snakemake.params.source,
    method=snakemake.params.method, limit=snakemake.params.limit, out=dict(snakemake.output.items()),
)
