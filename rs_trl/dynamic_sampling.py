"""DAPO dynamic sampling helpers: which groups to keep, a refill prompt stream, merging generation rounds.

Which groups carry no signal is `rs_trl.advantages.zero_variance_groups`, the test the advantage itself uses.

Pure tensor/data plumbing; the trainer decides when to call them.
"""

import itertools

import torch

# How to pad each per-row tensor TRL's `_generate_and_score_completions` returns when rounds are merged.
_LEFT_PADDED = {"prompt_ids", "prompt_mask"}
_RIGHT_PADDED = {
    "completion_ids",
    "completion_mask",
    "old_per_token_logps",
    "ref_per_token_logps",
    "sampling_per_token_logps",
    "importance_sampling_ratio",
    "tool_mask",
}
_PER_ROW_1D = {"advantages"}
_BATCH_SCALARS = {"num_items_in_batch"}


def take_first(candidates: torch.Tensor, quota: torch.Tensor) -> torch.Tensor:
    """For each row of a [processes, groups] bool mask, keep the first `quota[row]` True entries."""
    return candidates & (candidates.long().cumsum(dim=1) <= quota.unsqueeze(1))


def group_rows(group_mask: torch.Tensor, group_size: int) -> torch.Tensor:
    """Row indices of the samples of the selected groups (a group is `group_size` contiguous rows)."""
    groups = group_mask.nonzero().flatten()
    return (groups.unsqueeze(1) * group_size + torch.arange(group_size, device=groups.device)).flatten()


def select_rows(batch: dict, rows: torch.Tensor) -> dict:
    """The given rows of every per-row tensor of a scored batch."""
    return {key: value if key in _BATCH_SCALARS else value[rows.to(value.device)] for key, value in batch.items()}


def concat_batches(batches: list[dict], pad_token_id: int) -> dict:
    """Concatenate scored batches of different sequence lengths, padding as TRL does (prompts left, rest right)."""
    keys = batches[0].keys()
    unsupported = set(keys) - _LEFT_PADDED - _RIGHT_PADDED - _PER_ROW_1D - _BATCH_SCALARS
    if unsupported:
        raise NotImplementedError(
            f"dynamic_sampling cannot merge batches with {sorted(unsupported)} (multimodal inputs); "
            "set dynamic_sampling=False."
        )
    merged = {}
    for key in keys:
        values = [batch[key] for batch in batches if batch[key] is not None]
        if key in _BATCH_SCALARS or not values:
            merged[key] = None if not values else values[0]
            continue
        if key in _PER_ROW_1D:
            merged[key] = torch.cat(values)
            continue
        width = max(value.size(1) for value in values)
        fill = {"prompt_ids": pad_token_id, "completion_ids": pad_token_id, "tool_mask": 1}.get(key, 0)
        padded = []
        for value in values:
            padding = value.new_full((value.size(0), width - value.size(1)), fill)
            padded.append(torch.cat([padding, value] if key in _LEFT_PADDED else [value, padding], dim=1))
        merged[key] = torch.cat(padded)
    return merged


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
            if self.position == self.dataset_size:
                self.pass_index, self.position = self.pass_index + 1, 0
        self.drawn += count
        return indices

    def state_dict(self) -> dict:
        return {"pass_index": self.pass_index, "position": self.position, "drawn": self.drawn}

    def load_state_dict(self, state: dict):
        self.pass_index, self.position, self.drawn = state["pass_index"], state["position"], state["drawn"]


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
        self.pass_index, self.position, self.drawn = state["pass_index"], state["position"], state["drawn"]
        self._rows = None
