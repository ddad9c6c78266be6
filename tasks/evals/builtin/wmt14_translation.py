"""WMT-14 English<->French, zero-shot-style translation as in the GPT-2 paper (section 3.7).

The model sees example pairs written `english sentence = french sentence`, one per line,
then `english sentence =`; it continues greedily, and the first sentence it writes is the
translation. Scored with sacrebleu's corpus BLEU on detokenized text. Online, the data is
the `wmt14` `fr-en` test set; offline, a small sample that ships with gpt2lab.
"""

from __future__ import annotations

from pathlib import Path

from tasks.evals.metrics import bleu_interval, bleu_paired, corpus_bleu, sentence_bleu, sentences
from tasks.evals.paper import wmt14
from tasks.evals.task import DataSource, EvalTask, Generation, Row

LOCAL = Path(__file__).with_name("local_data")
EXAMPLES = 5  # example pairs before the sentence to translate


def pair_prompt(source: str, target: str):
    """Prompt builder: `source = target` lines for the examples, then `source =`."""

    def prompt(row: Row, examples: list[Row]) -> str:
        lines = [f"{example[source]} = {example[target]}" for example in examples]
        return "\n".join([*lines, f"{row[source]} ="])

    return prompt


def first_sentence(text: str) -> str:
    """The translation: the first sentence of the first line the model wrote."""
    line = text.strip().split("\n", 1)[0] if text.strip() else ""
    found = sentences(line)
    return found[0] if found else ""


def bleu(outputs: list[str], references: list[str], rows: list[Row]) -> dict[str, float | str]:
    score, signature = corpus_bleu(outputs, references)
    return {"bleu": score, "bleu_signature": signature}


def _task(source: str, target: str) -> EvalTask:
    names = {"en": "English", "fr": "French"}
    return EvalTask(
        name=f"wmt14-{source}-{target}",
        version=2,
        description=f"WMT-14 {names[source]} -> {names[target]}, {EXAMPLES} example pairs, "
        "greedy, first sentence, sacrebleu BLEU",
        data=DataSource(
            local=LOCAL / "wmt14-en-fr.sample.jsonl",
            hub_id="wmt14",
            hub_config="fr-en",
            few_shot_local=LOCAL / "wmt14-en-fr.few-shot.jsonl",
            few_shot_hub_split="validation",
            hub_rows=lambda rows: [row["translation"] for row in rows],  # {"en":..., "fr":...}
        ),
        fields=("en", "fr"),
        prompt=pair_prompt(source, target),
        reference=lambda row: row[target],
        score=bleu,
        few_shot=EXAMPLES,
        generation=Generation(max_new_tokens=64, top_k=1, stop=("\n",)),
        postprocess=first_sentence,
        example_score=sentence_bleu,
        intervals=bleu_interval,  # sacrebleu's own bootstrap, and its paired test
        paired=bleu_paired,
        paper={"bleu": wmt14(f"{source}-{target}")},
    )


# The GPT-2 paper (section 3.7) reports 5 BLEU English->French and 11.5 BLEU
# French->English for its largest model (1542M) only; smaller sizes have no figure.
TASKS = [_task("en", "fr"), _task("fr", "en")]
