from alpacare.snake import setup
from alpacare.stages.selfinstruct import respond

setup(snakemake)
p = snakemake.params
respond(snakemake.input.tasks, snakemake.output[0], responder=p.responder, spec=p.spec,
        settings=snakemake.config["llm"], model_dir=snakemake.input.get("model"), sampling=dict(p.sampling),
        run_seed=p.run_seed, system_path=snakemake.input.get("system"))
