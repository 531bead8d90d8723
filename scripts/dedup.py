from alpacare.snake import setup
from alpacare.stages.selfinstruct import dedup_tasks

setup(snakemake)
dedup_tasks(snakemake.input.tasks, snakemake.input.seeds, snakemake.output.tasks, snakemake.output.report,
            threshold=snakemake.params.threshold, policy=snakemake.params.policy, target_tasks=snakemake.params.target_tasks)
