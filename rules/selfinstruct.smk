# Self-instruct: seed tasks -> generated tasks -> deduplicated tasks -> responses.
SI = config.get("selfinstruct", {})


rule generate_tasks:
    input:
        unpack(lambda w: {"seeds": "results/selfinstruct/seeds.jsonl", **llm_inputs(SI["teacher"])}),
        code=code("stages.selfinstruct", "stages.common", "selfinstruct", "llm", "checkpoints"),
    output:
        tasks="results/selfinstruct/tasks.raw.jsonl",
        rejects="results/selfinstruct/rejects.jsonl",
    params:
        teacher=SI.get("teacher"),
        spec=public(config["llms"][SI["teacher"]]) if SI else None,
        prompting=SI.get("prompting"),
        run_seed=config["run_seed"],
        requests=SI.get("requests"),
        examples_per_request=SI.get("examples_per_request"),
        tasks_per_request=SI.get("tasks_per_request"),
        sampling=SI.get("sampling"),
    threads: model_threads("selfinstruct", llm_backbone(SI.get("teacher")))
    resources:
        **model_resources("selfinstruct", llm_backbone(SI.get("teacher"))),
    conda:
        llm_env(SI.get("teacher"))
    localrule: calls_api(SI.get("teacher"))
    log:
        "results/logs/selfinstruct/generate_tasks.log",
    script:
        "../scripts/generate_tasks.py"


rule dedup:
    input:
        tasks="results/selfinstruct/tasks.raw.jsonl",
        seeds="results/selfinstruct/seeds.jsonl",
        code=code("stages.selfinstruct", "dedup", "rouge"),
    output:
        tasks="results/selfinstruct/tasks.jsonl",
        report="results/selfinstruct/dedup_report.json",
    params:
        threshold=SI.get("dedup", {}).get("threshold"),
        policy=SI.get("dedup", {}).get("policy"),
    localrule: True
    conda:
        ENVS["api"]
    log:
        "results/logs/selfinstruct/dedup.log",
    script:
        "../scripts/dedup.py"


rule respond:
    input:
        unpack(lambda w: {"tasks": "results/selfinstruct/tasks.jsonl", **llm_inputs(SI["responder"])}),
        code=code("stages.selfinstruct", "stages.common", "data", "llm", "checkpoints"),
    output:
        "results/selfinstruct/responses.jsonl",
    params:
        responder=SI.get("responder"),
        spec=public(config["llms"][SI["responder"]]) if SI else None,
        sampling=SI.get("response_sampling"),
        run_seed=config["run_seed"],
    threads: model_threads("selfinstruct", llm_backbone(SI.get("responder")))
    resources:
        **model_resources("selfinstruct", llm_backbone(SI.get("responder"))),
    conda:
        llm_env(SI.get("responder"))
    localrule: calls_api(SI.get("responder"))
    log:
        "results/logs/selfinstruct/respond.log",
    script:
        "../scripts/respond.py"
