"""The text a persona-conditioned reply is written after, and the reply's own ending.

    Persona: I have a cat named Milo. I work nights as a nurse.
    Them: Hi! Do you have any pets?
    You: Yes, my cat Milo. He sleeps on my keyboard.
    Them: Ha! What do you do for work?
    You:

The model plays "You": it reads who it is (the persona sentences), the conversation so
far, and writes the next reply after "You:", ending it with a newline. A training example
is that text with the reply filled in, and the encoder puts the tokenizer's
<|endoftext|> after it, so a fine-tuned model also learns where a dialogue stops.

Why plain words for the markers, not new special tokens such as "<speaker1>" (what
Hugging Face's ConvAI2 model added)? A special token needs a new row in the embedding
table, and GPT-2's vocabulary is fixed here; written as text, "<speaker1>" costs several
BPE pieces that mean nothing yet. "Persona:", "You:" and "Them:" are ordinary words that
any GPT-2 tokenizer (the 50,257 one or a small one learnt here) encodes in a piece or two,
and a pretrained GPT-2 has seen such transcript-like "Name: text" lines on the web, so it
can follow the layout even before fine-tuning. The newline ends a turn: a reply is one
line, so a newline in a turn is replaced by a space.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

PERSONA = "Persona:"
YOU = "You:"  # the model's own turns
THEM = "Them:"  # the other person's turns
END_OF_TURN = "\n"


def one_line(text: str) -> str:
    """A turn on a single line, its whitespace runs collapsed: a newline would end it."""
    return " ".join(text.split())


def speakers(history: Sequence[str]) -> list[str]:
    """Who said each turn of `history`: the last turn is always the other person's (the
    one being answered), and the speakers alternate before it, as in PERSONA-CHAT."""
    count = len(history)
    return [THEM if (count - i) % 2 == 1 else YOU for i in range(count)]


def build_prompt(persona: Sequence[str], history: Sequence[str]) -> str:
    """Persona sentences and the conversation so far, ending where the reply begins
    ("...\\nYou:"). The reply, written after it, starts with a space."""
    lines = []
    if persona:
        lines.append(f"{PERSONA} " + " ".join(one_line(s) for s in persona))
    turns = zip(speakers(history), history, strict=True)
    lines += [f"{who} {one_line(turn)}" for who, turn in turns]
    lines.append(YOU)
    return END_OF_TURN.join(lines)


def reply_text(reply: str) -> str:
    """The reply as it follows the prompt: a leading space (GPT-2's tokens carry the space
    before a word) and the end of the turn."""
    return " " + one_line(reply) + END_OF_TURN


def build_input(persona: Sequence[str], history: Sequence[str], reply: str) -> str:
    """One training example: the prompt with the reply written after it."""
    return build_prompt(persona, history) + reply_text(reply)


def cut_reply(generated: str) -> str:
    """The reply in what a model wrote after "You:": its first line, stripped (a model may
    go on to write the other person's next turn)."""
    return generated.split(END_OF_TURN, 1)[0].strip()


def fit_history(
    persona: Sequence[str], history: Sequence[str], fits: Callable[[str], bool]
) -> list[str]:
    """The most recent turns of `history` whose prompt `fits` (e.g. in the model's context,
    less room for the reply): the oldest turns go first, the persona and the turn being
    answered always stay. An empty list when even that last turn does not fit."""
    for start in range(len(history)):
        kept = list(history[start:])
        if fits(build_prompt(persona, kept)):
            return kept
    return []
