"""DAPO dynamic sampling: which groups to train on, how many to generate, where refill prompts come from.

`DynamicSamplingMixin` runs the generation rounds of a step on any `AdvantageGRPOTrainer` (the bridge over TRL, its
only dependency) and asks `DynamicSampler`, a pure policy object, what to do.

Cost model (a GPU cluster with vLLM): a generation round costs about its longest completion, almost regardless of
how many groups it holds, so what matters is the number of sequential rounds, then the samples generated. The
policy therefore predicts: it keeps a running estimate p of the fraction of zero-variance groups (groups whose
rewards are all equal, so they teach nothing) and generates, in the same round as the main batch, the extra groups
the step is expected to need, plus a safety margin of about one standard deviation. A refill round, when still
needed, is sized the same way for what is missing. Informative groups are pooled over processes (a global quota):
a process short of groups takes another process's surplus, which cuts the rounds that small per-process quotas
would otherwise need. Surplus beyond the quota is dropped, not carried over: by the next step the policy has moved.

A group carries no signal when the configured estimator gives every one of its samples a zero advantage: for GRPO
and RS-GRPO that is exactly "all rewards equal"; pass@k-style estimators also zero some groups whose rewards differ.
The sampler's "zero-variance" counts (and metric names) mean these groups.
"""

import itertools
import json
import logging
import math
import os

import torch
from accelerate.utils import gather_object
from datasets import IterableDataset

from .advantages import zero_variance_groups
from .checkpoints import CheckpointError

logger = logging.getLogger(__name__)

# Cap on the estimated zero-variance rate used for sizing rounds: a pessimistic estimate must not make one round
# absurdly large (at 0.8 a round holds at most about 5x the missing groups, plus the margin).
_MAX_ESTIMATE = 0.8
# Weight of the newest step in the running estimate of the zero-variance rate.
_ESTIMATE_MOMENTUM = 0.3


def groups_to_generate(missing: int, zero_variance_rate: float, num_processes: int) -> int:
    """Groups each process should generate to find `missing` informative groups in one round, usually.

    Informative groups among n generated ~ Binomial(n, 1 - p). Generating (missing + sqrt(missing * p)) / (1 - p)
    covers the mean plus about one standard deviation, so a further round is needed in roughly one step in six,
    while the samples generated stay within ~1 + sqrt(p / missing) of the 1 / (1 - p) minimum.
    """
    p = min(max(zero_variance_rate, 0.0), _MAX_ESTIMATE)
    total = (missing + math.sqrt(missing * p)) / (1.0 - p)
    return max(1, math.ceil(total / num_processes))


class DynamicSampler:
    """The refill policy of one trainer: round sizes, which groups each process trains on, and its state.

    Args:
        refill: a `RefillSampler` (map-style dataset) or `StreamRefill` (`IterableDataset`) for refill prompts.
        num_processes: processes training together.
        groups_per_process: groups each process hands to the loss per generation step.
        max_rounds: refill rounds allowed after the main round.
    """

    def __init__(self, refill, num_processes: int, groups_per_process: int, max_rounds: int):
        self.refill = refill
        self.num_processes = num_processes
        self.groups_per_process = groups_per_process
        self.max_rounds = max_rounds
        self.zero_variance_rate = 0.0  # no evidence yet: the first step generates no extra groups
        self._informative = []  # per round: [processes, groups] bool
        self._zero_variance = []
        self.previous_step_empty = False  # the previous step found no informative group at all
        self.stopped_early = False  # this step gave up refilling because nothing informative turned up

    @property
    def quota(self) -> int:
        return self.num_processes * self.groups_per_process

    def start_step(self) -> int:
        """Begin a generation step; returns the extra refill groups per process to add to the main round."""
        self._informative, self._zero_variance = [], []
        self.stopped_early = False
        predicted = groups_to_generate(self.quota, self.zero_variance_rate, self.num_processes)
        return max(predicted - self.groups_per_process, 0)

    def observe(self, zero_variance: torch.Tensor) -> int:
        """Record a round's [processes, groups] zero-variance mask; returns groups per process for the next round
        (0: the step has what it needs, or no rounds are left)."""
        self._informative.append(~zero_variance)
        self._zero_variance.append(zero_variance)
        missing = self.quota - self.informative_groups
        if missing <= 0 or len(self._informative) > self.max_rounds:
            return 0
        # Nothing informative at all: refills are unlikely to fill the batch (the prompts are too hard or too easy
        # for the policy, or the reward is constant), and each round costs a whole generation pass. Give it one
        # refill round, none when the previous step found nothing either, so such steps cost <= 2 rounds and a
        # run of them about 1 round per step.
        if self.informative_groups == 0 and (self.previous_step_empty or len(self._informative) >= 2):
            self.stopped_early = True
            return 0
        return groups_to_generate(missing, self.zero_variance_rate, self.num_processes)

    @property
    def rounds(self) -> int:
        """Generation rounds so far in this step, the main round included."""
        return len(self._informative)

    @property
    def informative_groups(self) -> int:
        return int(sum(mask.sum() for mask in self._informative))

    @property
    def generated_groups(self) -> int:
        return sum(mask.numel() for mask in self._informative)

    def finish_step(self) -> tuple[list[list[tuple[int, int, int]]], int]:
        """Assign groups to processes and update the estimate.

        Returns, for each process, its `groups_per_process` groups as (owner process, round, index in that
        process's round), and the number of padding groups (zero-variance groups filling a shortfall). Each
        process keeps its own informative groups first and takes other processes' surplus for the rest; padding
        comes from zero-variance groups the same way.
        """
        zero_variance = sum(int(mask.sum()) for mask in self._zero_variance)
        observed = zero_variance / max(self.generated_groups, 1)
        if self.zero_variance_rate == 0.0 and self.generated_groups:
            self.zero_variance_rate = observed
        else:
            self.zero_variance_rate += _ESTIMATE_MOMENTUM * (observed - self.zero_variance_rate)
        self.previous_step_empty = self.informative_groups == 0
        informative = self._assign(self._informative, [[] for _ in range(self.num_processes)])
        padding = self.quota - sum(len(groups) for groups in informative)
        return self._assign(self._zero_variance, informative), padding

    def _assign(self, masks, assigned):
        """Fill each process's list up to the quota from the groups marked in `masks`, own groups first."""
        pool = [
            [
                (process, round_index, int(group))
                for round_index, mask in enumerate(masks)
                for group in mask[process].nonzero()
            ]
            for process in range(self.num_processes)
        ]
        for process, groups in enumerate(assigned):  # own groups first: nothing to move between processes
            room = self.groups_per_process - len(groups)
            groups += pool[process][:room]
            pool[process] = pool[process][room:]
        spare = list(itertools.chain.from_iterable(pool))
        for groups in assigned:
            room = self.groups_per_process - len(groups)
            groups += spare[:room]
            spare = spare[room:]
        return assigned

    def state_dict(self) -> dict:
        return {
            "refill": self.refill.state_dict(),
            "zero_variance_rate": self.zero_variance_rate,
            "previous_step_empty": self.previous_step_empty,
        }

    def load_state_dict(self, state: dict):
        rate = state["zero_variance_rate"]
        if not (isinstance(rate, (int, float)) and 0 <= rate <= 1):
            raise ValueError(f"zero_variance_rate must be a number in [0, 1], got {rate!r}")
        self.refill.load_state_dict(state["refill"])
        self.zero_variance_rate = rate
        self.previous_step_empty = state.get("previous_step_empty", False)  # absent in checkpoints before it


class RefillSampler:
    """Endless, seeded stream of dataset indices for refill prompts, one fresh shuffle per pass.

    Every process holds an identical copy and draws the same global indices, then keeps its own slice,
    so processes never duplicate a refill prompt. Its state (pass, position, count drawn) is saved with checkpoints.
    """

    def __init__(self, dataset_size: int, seed: int):
        if dataset_size < 1:
            raise ValueError("dynamic_sampling needs a non-empty train_dataset to refill from.")
        self.dataset_size = dataset_size
        self.seed = seed
        self.pass_index = 0
        self.position = 0
        self.drawn = 0

    def _permutation(self) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed + self.pass_index)
        return torch.randperm(self.dataset_size, generator=generator)

    def take(self, count: int) -> list[int]:
        indices = []
        while len(indices) < count:
            permutation = self._permutation()
            chunk = permutation[self.position : self.position + count - len(indices)].tolist()
            indices += chunk
            self.position += len(chunk)
            # `>=`: a state restored from a run over a larger dataset may point past this one's end.
            if self.position >= self.dataset_size:
                self.pass_index, self.position = self.pass_index + 1, 0
        self.drawn += count
        return indices

    def state_dict(self) -> dict:
        return {"pass_index": self.pass_index, "position": self.position, "drawn": self.drawn}

    def load_state_dict(self, state: dict):
        self.pass_index, self.position, self.drawn = refill_counters(state)


class StreamRefill:
    """Refill prompts from an `IterableDataset`: a second pass over the stream, apart from the main dataloader's.

    Each pass reshuffles the stream (`IterableDataset.shuffle`, seeded per pass); when a pass ends the next one
    begins. Like `RefillSampler`, every process draws the same rows and keeps its own slice; the state is the same
    three integers, and a resume skips the rows already drawn in the current pass.
    """

    def __init__(self, dataset, seed: int):
        self.dataset = dataset
        self.seed = seed
        self.pass_index = 0
        self.position = 0
        self.drawn = 0
        self._rows = None

    def _open(self):
        stream = self.dataset.shuffle(seed=self.seed + self.pass_index)
        self._rows = iter(stream.skip(self.position) if self.position else stream)

    def take(self, count: int) -> list[dict]:
        rows = []
        while len(rows) < count:
            if self._rows is None:
                self._open()
            start = self.position
            chunk = list(itertools.islice(self._rows, count - len(rows)))
            rows += chunk
            self.position += len(chunk)
            if len(rows) < count:  # this pass is over
                if start == 0 and not chunk:
                    raise ValueError("dynamic_sampling cannot refill from an empty train_dataset stream.")
                self.pass_index, self.position, self._rows = self.pass_index + 1, 0, None
        self.drawn += count
        return rows

    def state_dict(self) -> dict:
        return {"pass_index": self.pass_index, "position": self.position, "drawn": self.drawn}

    def load_state_dict(self, state: dict):
        self.pass_index, self.position, self.drawn = refill_counters(state)
        self._rows = None


def refill_counters(state: dict) -> tuple[int, int, int]:
    """(pass_index, position, drawn) of a saved refill state, each a non-negative integer."""
    values = tuple(state[key] for key in ("pass_index", "position", "drawn"))
    for key, value in zip(("pass_index", "position", "drawn"), values):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"refill {key} must be a non-negative integer, got {value!r}")
    return values


DYNAMIC_SAMPLING_STATE = "dynamic_sampling_state.json"


class DynamicSamplingMixin:
    """DAPO dynamic sampling for an `AdvantageGRPOTrainer`, with any advantage: `class T(DynamicSamplingMixin,
    AdvantageGRPOTrainer)`. Reads `dynamic_sampling`, `dynamic_sampling_max_rounds` and
    `dynamic_sampling_on_exhaustion` from the config (`RSGRPOConfig`). It drops the groups whose advantage, as the
    trainer's `group_advantages` computes it, is zero for every sample, and logs the share of those whose rewards
    differ (`dynamic_sampling/frac_zero_advantage_unequal_rewards`).

    A training step runs scout rounds (TRL's generation and reward scoring, without its no-grad forward passes);
    `DynamicSampler` decides from the gathered rewards how many groups the next round needs and, at the end, which
    groups each process trains on. Then one replay runs TRL's pass on the kept groups, with generation and rewards
    taken from the scout rounds, so TRL's own code computes log-probs, metrics and the completions table for exactly
    the rows the loss sees. All processes take every decision on gathered values, so they run the same rounds and
    collectives. The refill position is saved with each checkpoint.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.dynamic_sampler = None
        self._warned_nothing_informative = False
        if self.args.dynamic_sampling:
            # Its own seeded pass over the training set (TRL's placeholder rows when an environment owns the data),
            # so refills never disturb the main dataloader's order.
            if isinstance(self.train_dataset, IterableDataset):
                refill = StreamRefill(self.train_dataset, self.args.seed + 1)
            else:
                refill = RefillSampler(len(self.train_dataset), self.args.seed + 1)
            per_process = self.args.per_device_train_batch_size * self.args.steps_per_generation
            self.dynamic_sampler = DynamicSampler(
                refill,
                self.accelerator.num_processes,
                per_process // self.num_generations,
                self.args.dynamic_sampling_max_rounds,
            )

    def build_training_batch(self, inputs: list[dict]) -> dict:
        if self.dynamic_sampler is None:
            return super().build_training_batch(inputs)
        sampler, group_size, num_processes = self.dynamic_sampler, self.num_generations, self.accelerator.num_processes
        rounds = []  # per round: this process's groups, and the gathered rewards [processes, groups, G, funcs]
        generated_rewards = []  # per round: the reward of every generated sample, as the advantage sees it
        silent_unequal = 0  # groups dropped for a zero advantage although their rewards differ
        round_inputs = inputs + self._refill_inputs(sampler.start_step())
        with self.generation_rounds():
            while round_inputs:
                groups, rewards_per_func = self.scout_round(round_inputs, group_size)
                rounds.append((groups, rewards_per_func.view(num_processes, -1, group_size, rewards_per_func.size(1))))
                rewards = self.total_rewards(rewards_per_func, group_size)
                generated_rewards.append(rewards)
                # What the estimator gives no gradient: beyond equal rewards, e.g. pass@k's groups whose every
                # k-subset holds a correct sample.
                advantages, _ = self.group_advantages(rewards, group_size)
                silent = (advantages.view(-1, group_size) == 0).all(dim=1)
                silent_unequal += int((silent & ~zero_variance_groups(rewards, group_size)).sum())
                round_inputs = self._refill_inputs(sampler.observe(silent.view(num_processes, -1).cpu()))
        generated, informative = sampler.generated_groups, sampler.informative_groups
        if sampler.stopped_early and not self._warned_nothing_informative:
            self._warned_nothing_informative = True
            logger.warning(
                "Dynamic sampling found no group with a learning signal among the %d generated for this step (every "
                "group's advantage is zero: e.g. every completion wrong, or every one right, or a constant reward), "
                "so it stopped refilling early instead of running up to dynamic_sampling_max_rounds=%d, and pads the "
                "batch. Such steps teach nothing: use prompts of more suitable difficulty, check the reward "
                "function, or set dynamic_sampling=False. This warning is shown once.",
                generated,
                self.args.dynamic_sampling_max_rounds,
            )
        assignment, padded = sampler.finish_step()
        if padded and self.args.dynamic_sampling_on_exhaustion == "error":
            raise RuntimeError(
                f"Dynamic sampling could not fill the batch after {len(rounds) - 1} extra generation rounds: "
                f"{1 - informative / generated:.0%} of the {generated} groups generated for this step carried no "
                "learning signal (a zero advantage for every completion; with rs_grpo or grpo: every completion of "
                f"the prompt scored the same), and {padded} groups are missing. "
                "Raise dynamic_sampling_max_rounds, use prompts of more suitable difficulty, set "
                "dynamic_sampling_on_exhaustion='pad', or set dynamic_sampling=False."
            )
        self.log_generated_rewards(torch.cat([r[1].flatten(0, 2) for r in rounds]), group_size)
        kept_rewards = torch.stack([rounds[r][1][owner, g] for groups in assignment for owner, r, g in groups])
        batch = self.replay(self._take_assigned_groups(rounds, assignment), kept_rewards.flatten(0, 1))
        values = {
            "rounds": len(rounds) - 1,
            "groups_generated": generated,
            "groups_kept": sampler.quota - padded,
            "frac_zero_variance_before_filter": 1 - informative / generated,
            "samples_per_kept_sample": generated / max(sampler.quota - padded, 1),
            "padded_groups": padded,
            "surplus_groups_dropped": max(informative - sampler.quota, 0),
            "refill_prompts_drawn": sampler.refill.drawn,
            "zero_variance_rate_estimate": sampler.zero_variance_rate,
            "generated_reward_mean": torch.nanmean(torch.cat(generated_rewards)).item(),
            "frac_zero_advantage_unequal_rewards": silent_unequal / generated,
        }
        self.log_metrics("train", {f"dynamic_sampling/{name}": value for name, value in values.items()})
        return batch

    def _take_assigned_groups(self, rounds, assignment) -> list[dict]:
        """This process's assigned groups; groups owned by another process are sent over (a global quota)."""
        rank = self.accelerator.process_index
        outgoing = {
            (target, position): rounds[r][0][g]
            for target, groups in enumerate(assignment)
            for position, (owner, r, g) in enumerate(groups)
            if owner == rank and target != rank
        }
        received = {}
        if self.accelerator.num_processes > 1:
            for sent in gather_object([outgoing]):
                received.update(sent)
        return [
            rounds[r][0][g] if owner == rank else received[(rank, position)]
            for position, (owner, r, g) in enumerate(assignment[rank])
        ]

    def _refill_inputs(self, num_groups: int) -> list[dict]:
        """`num_groups` fresh prompts for this process, each repeated once per generation, as TRL's sampler does."""
        if num_groups == 0:
            return []
        refill, rank = self.dynamic_sampler.refill, self.accelerator.process_index
        drawn = refill.take(num_groups * self.accelerator.num_processes)
        mine = drawn[rank * num_groups : (rank + 1) * num_groups]
        rows = [self.train_dataset[index] for index in mine] if isinstance(refill, RefillSampler) else mine
        return [row for row in rows for _ in range(self.num_generations)]

    def save_extra_state(self, folder: str) -> None:
        super().save_extra_state(folder)
        if self.dynamic_sampler is not None:
            with open(os.path.join(folder, DYNAMIC_SAMPLING_STATE), "w") as f:
                json.dump(self.dynamic_sampler.state_dict(), f)

    def load_extra_state(self, folder: str) -> None:
        super().load_extra_state(folder)
        path = os.path.join(folder, DYNAMIC_SAMPLING_STATE)
        if self.dynamic_sampler is not None and os.path.exists(path):
            with open(path) as f:
                state = json.load(f)
            try:
                self.dynamic_sampler.load_state_dict(state)
            except (KeyError, TypeError, ValueError) as error:
                raise CheckpointError(
                    f"{path} is not a dynamic-sampling state ({type(error).__name__}: {error}); resume from another "
                    "checkpoint, or delete the file to resume with a fresh refill order."
                ) from None
