from alpacare.snake import setup
from alpacare.stages.usmle import answer_by_loglik

setup(snakemake)
answer_by_loglik(
    snakemake.input.questions, snakemake.input.template, snakemake.output[0], generator=snakemake.wildcards.generator,
    kind=snakemake.params.kind, spec=snakemake.params.spec, settings=snakemake.config["llm"],
    model_dir=snakemake.input.model, normalisation=snakemake.params.normalisation,
)
