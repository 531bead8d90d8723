# medAlpaca's USMLE self-assessment: questions -> answers per (method, generator) -> table + figure.
#   results/usmle/questions.jsonl, questions_summary.json   the questions asked, counts per step
#   results/usmle/{generation,loglik}/{generator}.jsonl     one row per question: prediction, correct
#   results/tables/usmle.{csv,md}, results/figures/usmle.png
from alpacare.usmle.plan import generator_kind, generators_by_method
from alpacare.usmle.questions import is_official_layout, official_files, parse_source

USMLE = config.get("usmle")
USMLE_PLAN = generators_by_method(config, ", ".join(map(str, workflow.configfiles)) or "config")
USMLE_TARGETS = ["results/tables/usmle.csv", "results/tables/usmle.md", "results/figures/usmle.png"] if USMLE_PLAN else []


def usmle_source_files():
    """The project files a local questions source reads (none for a URL or the hub)."""
    kind, path = parse_source(USMLE["questions"]["source"])
    if kind != "path":
        return []
    return [f"{path}/{name}" for name in official_files()] if is_official_layout(path) else [path]


def usmle_model(generator):
    """(inputs, spec) of a generator that answers: its model directory and, for an LLM, the
    public part of its spec (the provider and model; never a key or a price)."""
    spec = config["generators"][generator]
    if "model" in spec:
        return {"model": f"results/checkpoints/{spec['model']}"}, {"provider": "local"}
    if "backbone" in spec:
        return {"model": backbone_dir(spec["backbone"])}, {"provider": "local"}
    return llm_inputs(spec["llm"]), public(config["llms"][spec["llm"]])


def usmle_gpus(generator):
    spec = config["generators"][generator]
    return config["models"][spec["model"]]["gpus"] if "model" in spec else 0


def usmle_setting(method, key):
    return USMLE["methods"][method].get(key, USMLE.get(key))


def usmle_answer_inputs(method):
    return lambda w: {
        "questions": "results/usmle/questions.jsonl",
        "template": usmle_setting(method, "prompt"),
        **usmle_model(w.generator)[0],
    }


if USMLE_PLAN:

    rule usmle_questions:
        input:
            files=usmle_source_files(),
            code=code("stages.usmle", "usmle.questions"),
        output:
            questions="results/usmle/questions.jsonl",
            summary="results/usmle/questions_summary.json",
        params:
            source=USMLE["questions"],
        log:
            "results/logs/usmle/questions.log",
        script:
            "../scripts/usmle_questions.py"

    rule usmle_generation:
        input:
            unpack(usmle_answer_inputs("generation")),
            code=code("stages.usmle", "stages.common", "usmle.answers", "template", "data", "llm", "checkpoints"),
        output:
            "results/usmle/generation/{generator}.jsonl",
        wildcard_constraints:
            generator="|".join(map(re.escape, USMLE_PLAN.get("generation", []))) or "(?!)",
        params:
            kind=lambda w: generator_kind(config, w.generator),
            spec=lambda w: usmle_model(w.generator)[1],
            max_new_tokens=lambda w: usmle_setting("generation", "max_new_tokens"),
        threads: TORCH_THREADS
        resources:
            gpu=lambda w: usmle_gpus(w.generator),
        log:
            "results/logs/usmle/generation/{generator}.log",
        script:
            "../scripts/usmle_generation.py"

    rule usmle_loglik:
        input:
            unpack(usmle_answer_inputs("loglik")),
            code=code("stages.usmle", "stages.common", "usmle.answers", "template", "data", "llm", "checkpoints"),
        output:
            "results/usmle/loglik/{generator}.jsonl",
        wildcard_constraints:
            generator="|".join(map(re.escape, USMLE_PLAN.get("loglik", []))) or "(?!)",
        params:
            kind=lambda w: generator_kind(config, w.generator),
            spec=lambda w: usmle_model(w.generator)[1],
            normalisation=lambda w: usmle_setting("loglik", "normalisation"),
        threads: TORCH_THREADS
        resources:
            gpu=lambda w: usmle_gpus(w.generator),
        log:
            "results/logs/usmle/loglik/{generator}.log",
        script:
            "../scripts/usmle_loglik.py"

    USMLE_ANSWERS = {(m, g): f"results/usmle/{m}/{g}.jsonl" for m, gs in USMLE_PLAN.items() for g in gs}

    rule usmle_report:
        input:
            answers=list(USMLE_ANSWERS.values()),
            summary="results/usmle/questions_summary.json",
            published=USMLE["published"],
            code=code("stages.usmle", "usmle.scores"),
        output:
            csv=report("results/tables/usmle.csv", caption="../report/usmle_table.rst", category="USMLE"),
            md="results/tables/usmle.md",
            figure=report("results/figures/usmle.png", caption="../report/usmle.rst", category="USMLE"),
        params:
            answer_keys=[list(k) for k in USMLE_ANSWERS],
            published_names=USMLE.get("published_names", {}),
        log:
            "results/logs/usmle/report.log",
        script:
            "../scripts/usmle_report.py"
