"""Dedup at the paper's scale: alpacare.dedup (indexed, exact) against the obvious loop that
scores every (candidate, kept task) pair with the `rouge-score` package, as self-instruct and
Stanford Alpaca do.

The corpus (default 24,000 instructions) is generated, deterministically: the project's own
seed instructions, then instructions built from about 70 templates written in the style of
generated medical tasks (patient, caregiver, nurse, student, clinician and expert voices;
questions and imperatives; 4 to 45 words) filled from a vocabulary of conditions, drugs,
tests, procedures, populations and settings, with planted near-duplicates (about 12%: an
earlier instruction with one to three words dropped, swapped or added, some reordered, some
exact copies), so that both decisions matter and many pairs share most of their words.

The naive loop runs on the first --sample candidates only (it is quadratic); ours runs on all
of them. Kept sets must be identical on the sample (checked), and the naive loop's full-corpus
time is projected from its measured time per scored pair times the number of pairs it would
score on the whole corpus (every candidate against every kept task, known from our run).
Last line: the speed-up over that projection, and ours projected to 52,000 candidates.
"""

import argparse
import json
import math
import random
import resource
import time
from pathlib import Path

from rouge_score import rouge_scorer

from alpacare.dedup import dedup

ROOT = Path(__file__).resolve().parent.parent

CONDITIONS = """type 2 diabetes|hypertension|asthma|COPD|heart failure|atrial fibrillation|stroke|migraine|epilepsy|
Parkinson's disease|multiple sclerosis|Alzheimer's disease|depression|generalized anxiety disorder|bipolar disorder|
schizophrenia|pneumonia|tuberculosis|HIV infection|hepatitis B|hepatitis C|sepsis|urinary tract infection|cellulitis|
Lyme disease|malaria|COVID-19|influenza|chronic kidney disease|acute kidney injury|nephrotic syndrome|gout|
rheumatoid arthritis|osteoarthritis|lupus|psoriasis|eczema|acne|melanoma|breast cancer|prostate cancer|
colorectal cancer|lung cancer|leukemia|lymphoma|iron deficiency anemia|sickle cell disease|hemophilia|
deep vein thrombosis|pulmonary embolism|hypothyroidism|Graves' disease|Cushing's syndrome|Addison's disease|
osteoporosis|celiac disease|Crohn's disease|ulcerative colitis|irritable bowel syndrome|GERD|peptic ulcer disease|
pancreatitis|cirrhosis|gallstones|appendicitis|preeclampsia|gestational diabetes|endometriosis|polycystic ovary syndrome|
otitis media|bronchiolitis|croup|Kawasaki disease|ADHD|autism spectrum disorder|glaucoma|cataracts|
macular degeneration|sleep apnea|obesity|anaphylaxis|dehydration|hyperkalemia|hyponatremia|diabetic ketoacidosis""".replace("\n", "").split("|")
DRUGS = """metformin|insulin glargine|lisinopril|amlodipine|atorvastatin|warfarin|apixaban|aspirin|clopidogrel|
metoprolol|furosemide|spironolactone|levothyroxine|prednisone|methotrexate|adalimumab|amoxicillin|azithromycin|
ciprofloxacin|vancomycin|oseltamivir|sertraline|fluoxetine|lithium|quetiapine|haloperidol|morphine|oxycodone|
ibuprofen|acetaminophen|omeprazole|ondansetron|albuterol|budesonide|montelukast|empagliflozin|semaglutide|
digoxin|amiodarone|heparin|enoxaparin|tamoxifen|allopurinol|colchicine|gabapentin|levetiracetam|valproate""".replace("\n", "").split("|")
TESTS = """complete blood count|basic metabolic panel|HbA1c|lipid panel|thyroid function tests|liver function tests|
arterial blood gas|ECG|chest X-ray|CT of the head|MRI of the brain|echocardiogram|urinalysis|blood cultures|
lumbar puncture|colonoscopy|mammogram|bone density scan|spirometry|troponin|D-dimer|INR|PSA test|Pap smear""".replace("\n", "").split("|")
PROCEDURES = """laparoscopic appendectomy|knee replacement|hip replacement|cataract surgery|coronary angioplasty|
cesarean section|tonsillectomy|colectomy|mastectomy|hernia repair|cardiac catheterization|dialysis|
chemotherapy|radiation therapy|bone marrow transplant|kidney transplant|bariatric surgery|spinal fusion""".replace("\n", "").split("|")
PEOPLE = ["my father", "my mother", "my 3-year-old son", "my teenage daughter", "my husband", "my wife", "my grandmother",
          "a 68-year-old man", "a 25-year-old pregnant woman", "an 8-year-old child", "a newborn", "an elderly nursing home resident",
          "a college athlete", "a patient on dialysis", "a kidney transplant recipient", "a 45-year-old smoker"]
AUDIENCES = ["a patient", "a worried parent", "first-year nursing students", "a family caregiver", "medical students",
             "a newly diagnosed teenager", "an older adult with low health literacy", "a primary care team", "a pharmacist"]
SETTINGS = ["in the emergency department", "at home", "on a general medical ward", "in the intensive care unit",
            "in primary care", "in a rural clinic", "during pregnancy", "after discharge", "in a nursing home"]
FORMATS = ["in three bullet points", "in plain language", "as a numbered list", "in under 100 words", "as a table",
           "in two short paragraphs", "step by step", "using the SBAR format", "as a one-page handout"]

SYMPTOMS = ["chest pain", "shortness of breath", "a persistent cough", "fever and chills", "a severe headache", "dizziness",
            "abdominal pain", "blood in the urine", "swollen ankles", "a new rash", "joint pain", "night sweats",
            "weight loss", "palpitations", "confusion", "blurred vision", "back pain", "vomiting", "fatigue", "numbness in one arm"]
CONTEXTS = [
    "I am {age} and have had {y} for {k} days.",
    "A {age}-year-old with a history of {c} presents with {y}.",
    "My {rel} has {c} and has started to complain of {y}.",
    "You are working {s} and are asked to see {p}.",
    "During a night shift, {p} on {d} develops {y}.",
    "I have been taking {d} for {k} weeks.",
    "A {age}-year-old patient is admitted with {c}; the team is considering {r}.",
    "Our clinic is updating its protocol for {c}.",
    "As a {role}, I often get questions about {d}.",
    "After {r}, {p} reports {y} on day {k}.",
]
RELATIVES = ["father", "mother", "son", "daughter", "husband", "wife", "grandmother", "grandfather", "brother", "sister"]
ROLES = ["pharmacist", "school nurse", "paramedic", "medical student", "junior doctor", "midwife", "GP", "dietitian"]

TEMPLATES = [
    "Explain the pathophysiology of {c} {f}.",
    "What are the early warning signs of {c} that {a} should know?",
    "Describe the first-line treatment for {c} {s}.",
    "I was just diagnosed with {c}. What changes should I make to my daily routine?",
    "My doctor started me on {d}. What side effects should I watch for?",
    "Why would a doctor prescribe {d} for {c}?",
    "Write a discharge instruction sheet for {p} going home after {r}.",
    "Summarize the following clinical note about {p} with {c} {f}.",
    "Classify the following symptoms as typical or atypical for {c}.",
    "Answer the following multiple-choice question about {d} and explain your choice.",
    "Answer this USMLE-style question about {c} and explain why each distractor is wrong.",
    "Extract every medication, dose and frequency from the note below about {p}.",
    "Rewrite this explanation of {t} results so that {a} can understand it.",
    "How should {t} results be interpreted in {p} with suspected {c}?",
    "List the contraindications to {d} {f}.",
    "Compare {d} and {d2} for the treatment of {c}.",
    "What monitoring is needed for {p} taking {d} {s}?",
    "Draft a short patient education leaflet about {c} for {a}.",
    "Is it safe for {p} to take {d} together with {d2}?",
    "Create a teaching case about {c} {s} for {a}, with three discussion questions.",
    "Given the lab results below, calculate the anion gap and discuss whether it fits {c}.",
    "What questions should I ask my surgeon before {r}?",
    "Explain how {t} helps in the diagnosis of {c}.",
    "Outline a nursing care plan for {p} with {c} {s}.",
    "My {c} seems to be getting worse. When should I go to the emergency room?",
    "Describe the recovery timeline after {r} for {p}.",
    "Provide a differential diagnosis for {p} presenting with symptoms of {c} {s}.",
    "What lifestyle changes reduce the risk of {c}?",
    "Summarize current guidance on screening for {c} {f}.",
    "Translate this medical jargon about {c} into simple words for {a}.",
    "Role-play as a nurse calling {p} to follow up after {r}.",
    "Which laboratory findings would you expect in {c}, and why?",
    "How does {d} work, and why does it help with {c}?",
    "Discuss the ethical issues in caring for {p} with advanced {c}.",
    "Identify the errors in the following medication order for {d}.",
    "Based on the case below, what is the most likely diagnosis, and what is the next step in management?",
    "Explain to {a} why {t} is needed before {r}.",
    "What is the prognosis of {c} in {p}?",
    "Give me a simple meal plan for someone living with {c}.",
    "Write a referral letter to a specialist for {p} with poorly controlled {c}.",
    "Tell me whether {d} can cause {c} and how common that is.",
    "Create five flashcards on {d} for {a}.",
    "How do you tell {c} apart from {c2} {s}?",
    "What vaccines are recommended for {p} with {c}?",
    "Explain the genetics of {c} to {a} {f}.",
    "Describe the mechanism of action, key adverse effects and monitoring of {d}.",
    "A nurse notices that {p} on {d} is confused and drowsy. What should she check first?",
    "Summarize the risks and benefits of {r} for {p} {f}.",
    "Convert the following handover about {p} into SBAR format.",
    "Why is {t} ordered for {p} with {c}?",
    "What are the complications of untreated {c}?",
    "Design a quiz with four questions on {c} {s} for {a}.",
    "Describe how to give {d} safely to {p}.",
    "How long after starting {d} should I expect my {c} to improve?",
    "Critically appraise the study abstract below on {d} for {c}.",
    "What is the difference between {c} and {c2}?",
    "Please explain what my {t} result means.",
    "Walk me through the management of {c} {s}, step by step.",
    "Write a short dialogue in which a doctor explains {r} to {p}.",
    "What red flags in {p} with {c} need urgent review?",
    "Rank the following treatments for {c} by strength of evidence.",
    "Explain why {p} with {c} should avoid {d}.",
    "Describe the typical presentation of {c} in {p}.",
    "Develop a checklist for monitoring {p} after {r}.",
    "Can {c} be cured, or only controlled?",
    "What should {a} know about {d} before the first dose?",
    "Outline the epidemiology and risk factors of {c}.",
    "Give an overview of {c} {f}.",
]


# the teacher rarely words two tasks alike: each of these words is replaced by a random variant
VARIANTS = {w: group for group in (
    ["Explain", "Describe", "Clarify", "Discuss", "Tell me about", "Help me understand"],
    ["What", "Which"], ["Write", "Draft", "Compose", "Prepare", "Put together"],
    ["Summarize", "Condense", "Give a brief summary of", "Recap"], ["List", "Enumerate", "Name", "Identify"],
    ["Create", "Design", "Develop", "Build", "Make"], ["treatment", "therapy", "management", "care"],
    ["signs", "symptoms", "features", "clues"], ["patient", "person", "individual", "client"],
    ["should", "must", "ought to", "need to"], ["following", "below", "attached", "given"],
    ["short", "brief", "concise", "compact"], ["simple", "plain", "everyday", "clear"],
    ["risk", "chance", "likelihood"], ["doctor", "physician", "GP", "clinician"], ["safe", "okay", "advisable"],
    ["common", "frequent", "typical", "usual"], ["early", "first", "initial"], ["why", "how come", "for what reason"],
) for w in group}


def vary(text: str, rng: random.Random) -> str:
    for word, group in VARIANTS.items():
        if word in text and rng.random() < 0.8:
            text = text.replace(word, rng.choice(group), 1)
    return text


def generate(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    project = [s["instruction"] for s in json.loads((ROOT / "seeds/medical_seed_tasks.json").read_text())]
    out = list(project)
    while len(out) < n:
        roll = rng.random()
        if roll < 0.12 and len(out) > 10:  # a planted near-duplicate of an earlier instruction
            words = rng.choice(out).split()
            for _ in range(rng.randint(0, 3)):
                kind = rng.random()
                if kind < 0.4 and len(words) > 3:
                    del words[rng.randrange(len(words))]
                elif kind < 0.7:
                    words.insert(rng.randrange(len(words) + 1), rng.choice(["also", "please", "briefly", "clearly", "now"]))
                elif len(words) > 2:
                    i = rng.randrange(len(words) - 1)
                    words[i], words[i + 1] = words[i + 1], words[i]
            out.append(" ".join(words))
            continue
        template = rng.choice(TEMPLATES)
        c, c2 = rng.sample(CONDITIONS, 2)
        d, d2 = rng.sample(DRUGS, 2)
        if rng.random() < 0.6:
            template = rng.choice(CONTEXTS) + " " + template
        if rng.random() < 0.3:
            template += " " + rng.choice(["Also,", "Then", "In addition,", "Finally,"]) + " " + rng.choice(TEMPLATES).lower()
        template = vary(template, rng)
        slots = dict(c=c, c2=c2, d=d, d2=d2, t=rng.choice(TESTS), r=rng.choice(PROCEDURES), p=rng.choice(PEOPLE),
                     a=rng.choice(AUDIENCES), s=rng.choice(SETTINGS + [""] * 3), f=rng.choice(FORMATS + [""] * 4),
                     y=rng.choice(SYMPTOMS), age=rng.randint(2, 95), k=rng.randint(2, 30), rel=rng.choice(RELATIVES),
                     role=rng.choice(ROLES))
        text = template.format(**slots)
        out.append(" ".join(text.split()).replace(" .", ".").replace(" ,", ","))
    return out[:n]


def naive_keep_first(texts: list[str], threshold: float) -> tuple[list[int], int]:
    """Every candidate scored against every kept one with rouge-score; (kept, pairs scored)."""
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    kept: list[int] = []
    pairs = 0
    for i, text in enumerate(texts):
        scores = [scorer.score(texts[j], text)["rougeL"].fmeasure for j in kept]
        pairs += len(scores)
        if not scores or max(scores) <= threshold:
            kept.append(i)
    return kept, pairs


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=24000, help="corpus size (at least 20,000 for the headline)")
    parser.add_argument("--sample", type=int, default=1000, help="candidates the naive loop runs on")
    parser.add_argument("--threshold", type=float, default=0.7)
    args = parser.parse_args()
    texts = generate(args.n)
    tasks = [{"instruction": t} for t in texts]
    print(f"corpus: {len(texts)} generated instructions, {len(set(texts))} distinct, "
          f"{sum(len(t.split()) for t in texts) / len(texts):.1f} words on average")

    cpu = time.process_time()
    dedup(tasks[: len(tasks) // 2], [], args.threshold, "keep-first")
    half_cpu = time.process_time() - cpu
    start, cpu = time.perf_counter(), time.process_time()
    kept, report = dedup(tasks, [], args.threshold, "keep-first")
    ours, ours_cpu = time.perf_counter() - start, time.process_time() - cpu
    # pairs the naive loop would score on the whole corpus: each candidate against every task kept before it
    kept_before, naive_pairs_full = 0, 0
    kept_flags = [False] * len(tasks)
    kept_ids = {id(t) for t in kept}
    for i, t in enumerate(tasks):
        naive_pairs_full += kept_before
        if id(t) in kept_ids:
            kept_flags[i] = True
            kept_before += 1
    print(f"ours, all {len(texts)}: kept {len(kept)}, {report['pairs_scored']} pairs scored exactly "
          f"(of {naive_pairs_full} the naive loop scores), {ours:.2f} s wall, {ours_cpu:.2f} s CPU")

    sample = texts[: args.sample]
    start, cpu = time.perf_counter(), time.process_time()
    expected, naive_pairs = naive_keep_first(sample, args.threshold)
    naive_cpu = time.process_time() - cpu
    ours_sample = [i for i in range(len(sample)) if kept_flags[i]]
    assert ours_sample == expected, "kept sets differ from rouge-score's on the sample"
    sample_kept, _ = dedup([{"instruction": t} for t in sample], [], args.threshold, "keep-first")
    assert [t["instruction"] for t in sample_kept] == [sample[i] for i in expected]
    per_pair = naive_cpu / max(naive_pairs, 1)
    naive_full = per_pair * naive_pairs_full
    print(f"naive rouge-score loop, first {len(sample)}: kept {len(expected)} (identical to ours), "
          f"{naive_pairs} pairs, {naive_cpu:.1f} s CPU ({per_pair * 1e6:.1f} us/pair)")
    print(f"naive loop projected to all {len(texts)}: {naive_full:.0f} s CPU ({naive_full / 3600:.2f} h)")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak_mb:.0f} MB")
    # ours grows faster than linearly (candidate lists grow with the pool): project with the
    # growth exponent measured between half the corpus and all of it
    exponent = max(1.0, math.log(ours_cpu / half_cpu, 2))
    projected_52k = ours_cpu * (52000 / len(texts)) ** exponent
    print(f"ours: {half_cpu:.2f} s CPU on the first half, {ours_cpu:.2f} s on all: grows as n^{exponent:.2f}")
    print(f"speed-up {naive_full / ours_cpu:.0f}x over the naive loop (CPU, {len(texts)} instructions); "
          f"ours projected to 52,000: {projected_52k:.0f} s")


if __name__ == "__main__":
    main()
