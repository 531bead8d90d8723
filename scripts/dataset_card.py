from alpacare.snake import setup
from alpacare.stages.stats import dataset_card

setup(snakemake)
i = snakemake.input
dataset_card(snakemake.output[0], dataset=snakemake.wildcards.dataset, seeds_path=i.seeds, summary_path=i.summary,
             rejects_path=i.rejects, report_path=i.report, responses_path=i.responses,
             seed_sources=list(snakemake.params.seed_sources), responder=dict(snakemake.params.responder))
