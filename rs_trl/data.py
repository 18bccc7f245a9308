r"""Math datasets as TRL prompt datasets: the paper's training sets, its benchmarks, and offline stand-ins for CPU.

Every loader returns a `datasets.Dataset` with a `prompt` column (chat: a one-message conversation; plain: the text,
for base models without a chat template) and an `answer` column (the gold final answer as a string), which
`rs_trl.rewards.math_accuracy_reward` reads by name. Benchmarks add `id` and `problem` columns so results can name
problems. All prompts use one template (`PROMPT_TEMPLATE`).

Hub datasets (need network or a warm cache; ids overridable with `hub_id=`):
    training: math12k, deepmath103k, dapo17k
    benchmarks: aime24, aime25, hmmt_feb24, hmmt_feb25, cmimc25, math500
Offline (from PyPI packages or generated in-process, seeded):
    training: arithmetic, gsm_symbolic (reasoning-gym)
    benchmarks: arithmetic-test, gsm_symbolic-test, champ (champ-dataset)
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any

from datasets import Dataset, load_dataset
from huggingface_hub import constants

PROMPT_TEMPLATE = "{question}\nPlease reason step by step, and put your final answer within \\boxed{{}}."

# DAPO-Math-17k wraps each question in an "Answer: $Answer" instruction that conflicts with the \boxed{} template.
_DAPO_PREFIX = (
    "Solve the following math problem step by step. The last line of your response should be of the form "
    "Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n"
)
_DAPO_SUFFIX = '\n\nRemember to put your answer on its own line after "Answer:".'


@dataclass(frozen=True)
class HubSource:
    """Where a Hub dataset keeps its problem and gold answer (`a.b` reads a nested field)."""

    hub_id: str
    question: str
    answer: str
    split: str | None = None  # fixed split (benchmarks publish one); None: the caller's `split`
    id_column: str | None = None


def make_prompt(question: str, chat: bool = True) -> str | list[dict[str, str]]:
    """The prompt for one problem: a single user message (chat) or the bare text (plain)."""
    text = PROMPT_TEMPLATE.format(question=question.strip())
    return [{"role": "user", "content": text}] if chat else text


def _records_to_dataset(records: list[dict[str, str]], chat: bool, extra: tuple[str, ...] = ()) -> Dataset:
    columns: dict[str, list] = {"prompt": [make_prompt(r["problem"], chat) for r in records]}
    columns["answer"] = [r["answer"] for r in records]
    for name in extra:
        columns[name] = [r[name] for r in records]
    return Dataset.from_dict(columns)


def _field(row: dict, path: str) -> Any:
    for key in path.split("."):
        row = row[key] if isinstance(row, dict) else None
    return row


def _question_text(value: Any) -> str:
    if isinstance(value, list):  # a conversation: the problem is the last user turn
        value = next((m["content"] for m in reversed(value) if m.get("role") == "user"), "")
    text = str(value)
    return text.removeprefix(_DAPO_PREFIX).removesuffix(_DAPO_SUFFIX)


def _load_dataset(path: str, what: str, way_out: str, **kwargs):
    """`load_dataset`, with a dataset the Hub cannot serve (offline or no network, and not cached) as a ValueError
    naming it and the ways out: the ConnectionError datasets raises is a traceback about HEAD requests."""
    try:
        return load_dataset(path, **kwargs)
    except ConnectionError as error:
        reason = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the Hugging Face Hub could not be reached"
        raise ValueError(
            f"{what} {path!r} is not in the local cache and {reason} ({error}); download it once with network access "
            f"(and HF_HUB_OFFLINE unset), or {way_out}."
        ) from error


def _load_hub(source: HubSource, split: str, load_kwargs: dict, name: str) -> list[dict]:
    if DATASETS[name].kind == "benchmark":
        way_out = "use an offline benchmark (e.g. --benchmarks arithmetic-test, gsm_symbolic-test or champ)"
    else:
        way_out = "use an offline training set (arithmetic, gsm_symbolic)"
    way_out += " or pass `hub_id=` a local directory with the same columns"
    raw = _load_dataset(source.hub_id, f"{name} dataset", way_out, split=source.split or split, **load_kwargs)
    top_level = {source.question.split(".")[0], source.answer.split(".")[0]}
    missing = sorted(top_level - set(raw.column_names))
    if missing:
        raise ValueError(
            f"{source.hub_id} (split {source.split or split!r}) has no column(s) {missing}; "
            f"its columns are {raw.column_names}. Pass `hub_id=` for a dataset with the same layout."
        )
    records, seen = [], set()
    for index, row in enumerate(raw):
        problem, answer = _question_text(_field(row, source.question)), _field(row, source.answer)
        if answer is None or problem in seen:  # DAPO-Math-17k repeats each problem ~100 times
            continue
        seen.add(problem)
        row_id = row.get(source.id_column) if source.id_column else None
        records.append({"problem": problem, "answer": str(answer), "id": str(index if row_id is None else row_id)})
    return records


# Held-out problems must never be trained on. The generators' problem spaces are finite (arithmetic with operands up
# to 10 has 187 distinct problems), so separate random streams would overlap; instead a hash of the problem text
# assigns every problem to exactly one split, and "test" keeps each problem once.
TEST_SHARE_PERCENT = 30  # arithmetic (max_operand 10): 63 test problems, 124 train problems
_MAX_DRAWS_PER_PROBLEM = 200  # stream draws allowed per requested problem before the split counts as exhausted


def split_of(problem: str) -> str:
    """Return "test" for a fixed ~30% of all possible problems (by a hash of the text, stable across runs), else "train"."""
    bucket = int.from_bytes(hashlib.sha256(problem.encode("utf-8")).digest()[:8], "big") % 100
    return "test" if bucket < TEST_SHARE_PERCENT else "train"


def _take_split(name: str, split: str, size: int, stream: Iterator[dict]) -> list[dict]:
    """The first `size` problems of `split` in `stream` (train may repeat a problem; test holds each once)."""
    records, seen = [], set()
    for record in itertools.islice(stream, _MAX_DRAWS_PER_PROBLEM * size):
        if split_of(record["problem"]) != split or (split == "test" and record["problem"] in seen):
            continue
        seen.add(record["problem"])
        records.append(record)
        if len(records) == size:
            return records
    raise ValueError(
        f"{name}: only {len(records)} distinct {split!r} problems exist, {size} were asked for; ask for fewer "
        "(`limit`/`size`/`eval_limit`) or widen the problem space (`max_operand` for arithmetic)."
    )


def _arithmetic(split: str, size: int, seed: int, max_operand: int = 10) -> list[dict]:
    """`a + b` / `a - b` (non-negative) with operands up to `max_operand`: hard but not hopeless for a 135M model."""
    rng = random.Random(f"arithmetic-{split}-{seed}")

    def stream() -> Iterator[dict]:
        while True:
            a, b = rng.randint(0, max_operand), rng.randint(0, max_operand)
            if rng.random() < 0.5:
                yield {"problem": f"What is {a} + {b}?", "answer": str(a + b)}
            else:
                a, b = max(a, b), min(a, b)
                yield {"problem": f"What is {a} - {b}?", "answer": str(a - b)}

    return _take_split("arithmetic", split, size, stream())


def _gsm_symbolic(split: str, size: int, seed: int) -> list[dict]:
    """GSM8K-style templated word problems from reasoning-gym (integer answers)."""
    try:
        import reasoning_gym
    except ImportError as error:
        raise ImportError("`gsm_symbolic` needs reasoning-gym: pip install 'rs_trl[offline]'") from error
    stream_seed = seed if split == "train" else seed + 1_000_003
    # Items are generated lazily on iteration, so a generous virtual size costs nothing.
    items = reasoning_gym.create_dataset("gsm_symbolic", size=_MAX_DRAWS_PER_PROBLEM * size, seed=stream_seed)
    stream = ({"problem": item["question"], "answer": str(item["answer"])} for item in items)
    return _take_split("gsm_symbolic", split, size, stream)


def _champ() -> list[dict]:
    """The 270 CHAMP competition problems (answers such as "1/(n+1)", graded by Math-Verify)."""
    try:
        files = resources.files("champ_dataset")  # not imported: only its bundled JSON is needed
    except ModuleNotFoundError as error:
        raise ImportError("the `champ` benchmark needs champ-dataset: pip install champ-dataset") from error
    problems = json.loads((files / "dataset_files" / "v0.json").read_text(encoding="utf-8"))["problems"]
    return [{"problem": p["_text"], "answer": p["_answer"], "id": key} for key, p in problems.items()]


@dataclass(frozen=True)
class Entry:
    """One dataset: a Hub source, or an offline loader `(split, size, seed, **options) -> records`."""

    kind: str  # "train" (load_math_dataset) or "benchmark" (load_benchmark)
    source: HubSource | None = None
    loader: Callable[..., list[dict]] | None = None
    options: frozenset[str] = frozenset()  # keyword arguments an offline loader accepts
    paper: bool = False  # one of the paper's six benchmarks (the default of `rs-trl eval`)


def _held_out(generator: Callable[..., list[dict]]) -> Callable[..., list[dict]]:
    """A generator's test split as a benchmark: distinct problems, none of which its train split can produce."""

    def load(split: str, size: int, seed: int, **options) -> list[dict]:
        return [dict(record, id=str(i)) for i, record in enumerate(generator("test", size, 0, **options))]

    return load


# Every dataset by name: adding one is one line here.
DATASETS: dict[str, Entry] = {
    # Training sets. math12k: train (12k), test (500). deepmath103k: train. dapo17k: train, a chat `prompt`, the answer
    # in reward_model.ground_truth, rows repeated ~100 times (deduplicated).
    "math12k": Entry("train", HubSource("hiyouga/math12k", "problem", "answer")),
    "deepmath103k": Entry("train", HubSource("zwhe99/DeepMath-103K", "question", "final_answer")),
    "dapo17k": Entry("train", HubSource("BytedTsinghua-SIA/DAPO-Math-17k", "prompt", "reward_model.ground_truth")),
    "arithmetic": Entry("train", loader=_arithmetic, options=frozenset({"size", "max_operand"})),
    "gsm_symbolic": Entry("train", loader=_gsm_symbolic, options=frozenset({"size"})),
    # Benchmarks: the paper's six, then offline ones.
    "aime24": Entry("benchmark", HubSource("HuggingFaceH4/aime_2024", "problem", "answer", "train", "id"), paper=True),
    "aime25": Entry(
        "benchmark", HubSource("MathArena/aime_2025", "problem", "answer", "train", "problem_idx"), paper=True
    ),
    "hmmt_feb24": Entry(
        "benchmark", HubSource("MathArena/hmmt_feb_2024", "problem", "answer", "train", "problem_idx"), paper=True
    ),
    "hmmt_feb25": Entry(
        "benchmark", HubSource("MathArena/hmmt_feb_2025", "problem", "answer", "train", "problem_idx"), paper=True
    ),
    "cmimc25": Entry(
        "benchmark", HubSource("MathArena/cmimc_2025", "problem", "answer", "train", "problem_idx"), paper=True
    ),
    "math500": Entry(
        "benchmark", HubSource("HuggingFaceH4/MATH-500", "problem", "answer", "test", "unique_id"), paper=True
    ),
    "arithmetic-test": Entry("benchmark", loader=_held_out(_arithmetic), options=frozenset({"max_operand"})),
    "gsm_symbolic-test": Entry("benchmark", loader=_held_out(_gsm_symbolic)),
    "champ": Entry("benchmark", loader=lambda split, size, seed: _champ()),
}


def dataset_names(kind: str, paper_only: bool = False) -> list[str]:
    """Names of the training sets (`kind="train"`) or benchmarks (`"benchmark"`), optionally the paper's only."""
    return [name for name, entry in DATASETS.items() if entry.kind == kind and (entry.paper or not paper_only)]


def benchmark_names(paper_only: bool = False) -> list[str]:
    return dataset_names("benchmark", paper_only)


def hub_id(name: str) -> str | None:
    """The Hub id a dataset is loaded from, None for offline ones (model cards link only Hub datasets)."""
    entry = DATASETS.get(name)
    return entry.source.hub_id if entry and entry.source else None


def _entry(name: str, kind: str, limit: int | None, kwargs: dict) -> Entry:
    allowed = dataset_names(kind)
    if name not in allowed:
        raise ValueError(f"unknown dataset name {name!r}; allowed: {', '.join(allowed)}.")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"`limit` must be a positive integer or None, got {limit!r}.")
    entry = DATASETS[name]
    if entry.loader is not None:
        unknown = sorted(set(kwargs) - entry.options)
        if unknown:
            raise ValueError(
                f"unexpected keyword argument(s) {unknown} for {name!r}; allowed: {sorted(entry.options)}."
            )
    return entry


def _hub_source(entry: Entry, kwargs: dict) -> HubSource:
    """The entry's source, or a mirror with the same layout when `hub_id=` is given."""
    return replace(entry.source, hub_id=kwargs.pop("hub_id")) if "hub_id" in kwargs else entry.source


def load_math_dataset(
    name: str, split: str = "train", *, chat: bool = True, limit: int | None = None, seed: int = 0, **kwargs
) -> Dataset:
    """A training dataset with columns `prompt` and `answer`.

    Args:
        name: a training set of `DATASETS` (`dataset_names("train")`).
        split: dataset split; offline generators accept "train" and "test" (disjoint sets of problems, see `split_of`).
        chat: conversational prompts (instruct models) or plain text (base models).
        limit: keep a seeded random subset of this many problems (Hub) / generate this many (offline).
        seed: shuffling seed (Hub) / generator seed (offline).
        **kwargs: Hub sets: `hub_id=` to use a mirror with the same columns, anything else goes to
            `datasets.load_dataset` (e.g. `revision`, `cache_dir`). Offline: `size` (default 1000; `limit` wins)
            and, for arithmetic, `max_operand` (default 10).
    """
    entry = _entry(name, "train", limit, kwargs)
    if entry.source is not None:
        dataset = _records_to_dataset(_load_hub(_hub_source(entry, kwargs), split, kwargs, name), chat)
        if limit is not None:
            dataset = dataset.shuffle(seed=seed).select(range(min(limit, len(dataset))))
        return dataset
    if split not in ("train", "test"):
        raise ValueError(f"`split` for offline dataset {name!r} must be 'train' or 'test', got {split!r}.")
    size = limit or kwargs.pop("size", 1000)
    return _records_to_dataset(entry.loader(split, size, seed, **kwargs), chat)


def load_benchmark(name: str, *, chat: bool = True, limit: int | None = None, **kwargs) -> Dataset:
    """An evaluation benchmark with columns `prompt`, `answer`, `id` and `problem`, in the benchmark's order.

    Args:
        name: a benchmark of `DATASETS` (`benchmark_names()`): Hub ones accept `hub_id=` and
            `datasets.load_dataset` kwargs; offline ones ("arithmetic-test" and "gsm_symbolic-test": 50 distinct seeded problems unless
            `limit`, none of which the training split of the same generator can produce;
            "champ": 270 problems, needs the champ-dataset package).
        chat: conversational or plain-text prompts.
        limit: keep only the first `limit` problems (quick checks).
    """
    entry = _entry(name, "benchmark", limit, kwargs)
    if entry.source is not None:
        source = _hub_source(entry, kwargs)
        records = _load_hub(source, source.split or "test", kwargs, name)
    else:
        records = entry.loader("test", limit or 50, 0, **kwargs)
    records = records[:limit] if limit else records
    return _records_to_dataset(records, chat, extra=("id", "problem"))


def load_prompt_dataset(
    path: str,
    split: str = "train",
    *,
    config: str | None = None,
    streaming: bool = False,
    prompt_column: str = "prompt",
    answer_column: str | None = None,
    chat: bool = True,
    limit: int | None = None,
    seed: int = 0,
):
    """Any dataset `datasets.load_dataset` can read (a Hub id or a local directory of data files), as TRL's and
    open-r1's GRPO scripts take it. A `prompt` column is used as it is (TRL's format: text or a conversation);
    another `prompt_column` holds the problem text and gets rs_trl's math prompt (`make_prompt`). `answer_column`, if
    given, is copied to `answer` (what `math_accuracy_reward` reads). Other columns pass through to the rewards."""
    way_out = "pass a local directory of data files as --dataset_name"
    dataset = _load_dataset(path, "dataset", way_out, name=config, split=split, streaming=streaming)
    # A stream may not know its columns before it is read; TRL's own checks then speak at the first batch.
    columns = set(dataset.column_names) if dataset.column_names is not None else {prompt_column, answer_column}
    if prompt_column not in columns:
        raise ValueError(
            f"dataset {path!r} (split {split!r}) has no column {prompt_column!r}; its columns are {sorted(columns)}. "
            "Name the column that holds the prompt or problem with --dataset_prompt_column."
        )
    if answer_column is not None and answer_column not in columns:
        raise ValueError(
            f"dataset {path!r} (split {split!r}) has no column {answer_column!r} (--dataset_answer_column); its "
            f"columns are {sorted(columns)}."
        )
    if prompt_column != "prompt":
        dataset = dataset.map(lambda row: {"prompt": make_prompt(_question_text(row[prompt_column]), chat)})
    if answer_column is not None and answer_column != "answer":
        dataset = dataset.map(lambda row: {"answer": str(row[answer_column])})
    if limit is not None:
        dataset = (
            dataset.take(limit) if streaming else dataset.shuffle(seed=seed).select(range(min(limit, len(dataset))))
        )
    return dataset
