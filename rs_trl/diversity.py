"""How many different answers a group of completions gives: the diversity that GRPO's sharpening collapses and
RS-GRPO is meant to keep. Pure functions over text; the trainer gathers every process's keys before grouping."""

import re

from .rewards import last_boxed

_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*(?:/\d+)?")


def final_answer(text: str) -> str:
    r"""A completion's final answer, as a key to compare completions by: the last `\boxed{}` content, else the last
    number (what Math-Verify falls back to), else the whole text; whitespace-collapsed and lowercased."""
    answer = last_boxed(text)
    if answer is None:
        numbers = _NUMBER.findall(text)
        answer = numbers[-1] if numbers else text
    return " ".join(answer.split()).lower()


def distinct_answer_metrics(answers: list[str], group_size: int) -> dict[str, float]:
    """`rs/distinct_answers/mean` (distinct final answers per group, averaged over groups) and
    `rs/frac_groups_one_answer` (share of groups whose completions all give the same answer), over whole groups of
    `group_size` consecutive answers."""
    groups = [answers[start : start + group_size] for start in range(0, len(answers), group_size)]
    distinct = [len(set(group)) for group in groups]
    return {
        "rs/distinct_answers/mean": sum(distinct) / len(distinct),
        "rs/frac_groups_one_answer": sum(count == 1 for count in distinct) / len(distinct),
    }
