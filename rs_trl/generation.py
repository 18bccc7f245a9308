"""Generation backends for evaluation: each turns a list of prompts into n sampled completions per prompt.

`TransformersSampler` (`model.generate`, CPU or one GPU; also takes a live model, as the trainer's greedy check does)
and `VLLMSampler` (vLLM, optional dependency). `make_sampler` picks one by name; "auto" prefers vLLM on a GPU.
"""

import importlib.util
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer

BACKENDS = ("auto", "vllm", "transformers")


class TransformersSampler:
    """Sampling with `model.generate` (CPU or one GPU): each prompt repeated n times, in batches of sequences."""

    def __init__(self, model: Any, tokenizer: Any = None, batch_size: int = 32, **model_kwargs):
        if isinstance(model, (str, Path)):
            device = "cuda" if torch.cuda.is_available() else "cpu"
            dtype = torch.bfloat16 if device == "cuda" else torch.float32
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(str(model))
            model = AutoModelForCausalLM.from_pretrained(str(model), dtype=dtype, **model_kwargs).to(device)
        elif tokenizer is None:
            raise ValueError("`tokenizer` is required when `model` is a loaded model rather than a path or Hub id.")
        if tokenizer.pad_token is None:  # e.g. Llama 3.1: batches need a pad token; TRL uses eos for training too
            tokenizer.pad_token = tokenizer.eos_token
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size

    def sample(self, prompts: list, n: int, temperature: float, top_p: float, max_new_tokens: int, desc: str):
        texts = [
            self.tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
            if isinstance(p, list)
            else p
            for p in prompts
        ]
        sampling = {"do_sample": False}
        if temperature > 0:
            sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p}
        jobs = [index for index in range(len(texts)) for _ in range(n)]
        completions: list[list[str]] = [[] for _ in texts]
        was_training = self.model.training  # a trainer's live model goes back to training mode afterwards
        self.model.eval()
        try:
            with tqdm(total=len(jobs), desc=desc, unit="sample") as progress:
                for start in range(0, len(jobs), self.batch_size):
                    batch = jobs[start : start + self.batch_size]
                    for index, text in zip(
                        batch, self._generate_texts([texts[i] for i in batch], max_new_tokens, sampling)
                    ):
                        completions[index].append(text)
                    progress.update(len(batch))
        finally:
            self.model.train(was_training)
        return completions

    def _generate_texts(self, texts: list[str], max_new_tokens: int, sampling: dict) -> list[str]:
        tokenizer = self.tokenizer
        padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"  # decoder-only batches pad left
        try:
            inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        finally:
            tokenizer.padding_side = padding_side
        with torch.no_grad():
            output = self.model.generate(
                **inputs.to(self.model.device),
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                **sampling,
            )
        return tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


class VLLMSampler:
    """Sampling with vLLM: one request per prompt asking for all n samples (prefix computed once, batched)."""

    def __init__(self, model: str, seed: int = 0, **llm_kwargs):
        if importlib.util.find_spec("vllm") is None:
            raise ImportError("backend='vllm' needs vLLM: pip install 'rs_trl[vllm]' (GPU), or use 'transformers'.")
        if not isinstance(model, (str, Path)):
            raise ValueError("backend='vllm' needs `model` as a path or Hub id, not a loaded model.")
        from vllm import LLM

        self.llm = LLM(model=str(model), seed=seed, **llm_kwargs)

    def sample(self, prompts: list, n: int, temperature: float, top_p: float, max_new_tokens: int, desc: str):
        from vllm import SamplingParams

        # No per-request seed: it would replay the same random stream for every problem. LLM(seed=...) fixes the run.
        params = SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_new_tokens)
        print(f"{desc}: {len(prompts)} prompts x {n} samples")
        if all(isinstance(p, list) for p in prompts):
            outputs = self.llm.chat(prompts, params, use_tqdm=True)  # applies the model's chat template
        else:
            outputs = self.llm.generate(prompts, params, use_tqdm=True)
        return [[sample.text for sample in output.outputs] for output in outputs]


def resolve_backend(backend: str, model: Any) -> str:
    """The backend "auto" stands for: vLLM when it is installed, a GPU is there and `model` is a path or Hub id."""
    if backend != "auto":
        return backend
    vllm_usable = importlib.util.find_spec("vllm") is not None and isinstance(model, (str, Path))
    return "vllm" if vllm_usable and torch.cuda.is_available() else "transformers"


def make_sampler(backend, model, tokenizer, seed, batch_size, backend_kwargs):
    if backend == "vllm":
        return VLLMSampler(model, seed=seed, **(backend_kwargs or {}))
    return TransformersSampler(model, tokenizer, batch_size=batch_size, **(backend_kwargs or {}))
