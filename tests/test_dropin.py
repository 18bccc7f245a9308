"""Drop-in fidelity: a TRL user's own GRPOTrainer code trains the same under RSGRPOTrainer (checked against TRL)."""

import importlib.resources
import inspect
import logging
import signal
import threading

import pytest
import torch
from datasets import Dataset, IterableDataset
from math_verify import parse, verify
from transformers import AutoTokenizer
from trl import GRPOConfig, GRPOTrainer

from rs_trl import RSGRPOConfig, RSGRPOTrainer
from rs_trl.tiny import cpu_training_args
from tests.helpers import grpo_config_like


def test_init_signature_is_grpo_trainers():
    ours = inspect.signature(RSGRPOTrainer.__init__).parameters
    theirs = inspect.signature(GRPOTrainer.__init__).parameters
    assert list(ours) == list(theirs)
    for name, parameter in theirs.items():
        assert (ours[name].kind, ours[name].default) == (parameter.kind, parameter.default), name


def open_r1_accuracy(completions, answer, **kwargs):
    """The shape of open-r1's accuracy reward: Math-Verify's parse/verify with their default (signal) timeouts."""
    rewards = []
    for completion, solution in zip(completions, answer):
        gold = parse(f"${solution}$")
        rewards.append(float(verify(gold, parse(completion))) + 0.5 * float(bool(parse(completion))))
    return rewards


def recording(func, calls: list):
    def record(**kwargs):
        calls.append((threading.current_thread() is threading.main_thread(), func(**kwargs)))
        return calls[-1][1]

    record.__name__ = func.__name__
    return record


def math_dataset(n=16):
    return Dataset.from_dict(
        {"prompt": [f"What is {i} + 3?" for i in range(n)], "answer": [str(i % 5) for i in range(n)]}
    )


@pytest.mark.parametrize("reward_timeout", [None, 60.0])
def test_math_verify_reward_scores_every_sample_like_grpo(tiny_model_dir, tmp_path, reward_timeout):
    """Default RSGRPOConfig (dynamic sampling on, β=2): the first round's rewards equal GRPOTrainer's, no faults."""
    rs_args = cpu_training_args(tmp_path / "rs", max_steps=2, reward_timeout=reward_timeout)
    runs = {}
    for cls, args in ((GRPOTrainer, grpo_config_like(rs_args)), (RSGRPOTrainer, rs_args)):
        calls = []
        trainer = cls(
            model=tiny_model_dir,
            reward_funcs=recording(open_r1_accuracy, calls),
            args=args,
            train_dataset=math_dataset(),
        )
        trainer.train()
        runs[cls] = trainer, calls
    (_, trl_calls), (trainer, our_calls) = runs[GRPOTrainer], runs[RSGRPOTrainer]
    assert our_calls[0] == trl_calls[0]
    assert all(on_main for on_main, _ in our_calls)
    assert all(None not in rewards for _, rewards in our_calls)
    assert any(reward > 0 for _, rewards in our_calls for reward in rewards)  # parse really ran and extracted
    logged = [h for h in trainer.state.log_history if "loss" in h]
    for kind in ("error", "timeout", "none", "nonfinite"):
        assert all(h[f"rewards/open_r1_accuracy/faults_{kind}"] == 0 for h in logged), kind


def needs_main_thread(completions, **kwargs):
    """A user's own signal-based timeout: only possible on the main thread."""
    previous = signal.signal(signal.SIGALRM, lambda *_: None)
    signal.alarm(10)
    try:
        return [float(len(c) % 3) for c in completions]
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("reward_timeout", [None, 30.0])
def test_signal_using_reward_works(tiny_model_dir, tmp_path, reward_timeout):
    args = cpu_training_args(tmp_path, dynamic_sampling=False, reward_timeout=reward_timeout)
    trainer = RSGRPOTrainer(
        model=tiny_model_dir, reward_funcs=needs_main_thread, args=args, train_dataset=math_dataset()
    )
    trainer.train()
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 2 and all(h["rewards/needs_main_thread/faults_error"] == 0 for h in logged)
    assert all(h["reward_std"] > 0 for h in logged)


def always_raises(completions, **kwargs):
    raise ValueError("grader config missing")


def always_none(completions, **kwargs):
    return [None] * len(completions)


@pytest.mark.parametrize("dynamic_sampling", [False, True])
def test_broken_reward_stops_training_with_its_name(tiny_model_dir, tmp_path, dynamic_sampling):
    args = cpu_training_args(tmp_path, max_steps=6, dynamic_sampling=dynamic_sampling, dynamic_sampling_max_rounds=1)
    trainer = RSGRPOTrainer(model=tiny_model_dir, reward_funcs=always_raises, args=args, train_dataset=math_dataset())
    with pytest.raises(RuntimeError, match=r"'always_raises' failed on every call for 3 generation steps") as info:
        trainer.train()
    assert "ValueError: grader config missing" in str(info.value)
    assert trainer.state.global_step == 2  # the third failed step stops before it trains


def test_rewards_missing_for_every_sample_stop_training(tiny_model_dir, tmp_path):
    args = cpu_training_args(tmp_path, max_steps=6, dynamic_sampling=False, reward_failure_patience=2)
    trainer = RSGRPOTrainer(model=tiny_model_dir, reward_funcs=always_none, args=args, train_dataset=math_dataset())
    with pytest.raises(RuntimeError, match="No sample got a reward from any reward function"):
        trainer.train()


def test_reward_failure_patience_none_warns_and_goes_on_like_trl(tiny_model_dir, tmp_path, caplog):
    """TRL's behaviour when no sample gets a reward: a warning each step, and training goes on."""
    args = cpu_training_args(tmp_path, max_steps=4, dynamic_sampling=False, reward_failure_patience=None)
    trainer = RSGRPOTrainer(model=tiny_model_dir, reward_funcs=always_none, args=args, train_dataset=math_dataset())
    with caplog.at_level("WARNING", logger="rs_trl.reward_guard"):
        trainer.train()
    assert trainer.state.global_step == 4
    assert sum("No sample of this generation step got a reward" in r.getMessage() for r in caplog.records) == 4


class Flaky:
    """Raises on its first call only, like a remote grader's hiccup."""

    __name__ = "flaky"

    def __init__(self):
        self.calls = 0

    def __call__(self, completions, **kwargs):
        self.calls += 1
        if self.calls == 1:
            raise ConnectionError("grader unreachable")
        return [float(len(c) % 3) for c in completions]


def test_a_failing_call_is_a_fault_and_warns_once(tiny_model_dir, tmp_path, caplog):
    args = cpu_training_args(tmp_path, max_steps=3, dynamic_sampling=False)
    trainer = RSGRPOTrainer(model=tiny_model_dir, reward_funcs=Flaky(), args=args, train_dataset=math_dataset())
    with caplog.at_level(logging.WARNING, logger="rs_trl.reward_guard"):
        trainer.train()
    assert trainer.state.global_step == 3
    errors = [h["rewards/flaky/faults_error"] for h in trainer.state.log_history if "loss" in h]
    assert errors == [8.0, 0.0, 0.0]
    assert sum("'flaky' failed on 100% of this step's samples" in r.getMessage() for r in caplog.records) == 1


def test_normalize_then_sum_at_beta_zero_is_trl(tiny_model_dir, tmp_path):
    def length_reward(completions, **kwargs):
        return [float(len(c) % 4) for c in completions]

    def digit_reward(completions, **kwargs):
        return [float(sum(ch.isdigit() for ch in c)) for c in completions]

    rs_args = cpu_training_args(
        tmp_path,
        risk_beta=0.0,
        dynamic_sampling=False,
        multi_objective_aggregation="normalize_then_sum",
        reward_weights=[1.0, 0.5],
    )
    outputs = []
    for cls, args in ((GRPOTrainer, grpo_config_like(rs_args)), (RSGRPOTrainer, rs_args)):
        trainer = cls(
            model=tiny_model_dir, reward_funcs=[length_reward, digit_reward], args=args, train_dataset=math_dataset()
        )
        trainer.model.train()
        torch.manual_seed(0)
        batch = [{"prompt": f"Compute {i} + 7."} for i in range(2) for _ in range(args.num_generations)]
        outputs.append(trainer._generate_and_score_completions(batch))
    assert torch.equal(outputs[0]["completion_ids"], outputs[1]["completion_ids"])
    assert outputs[0]["advantages"].abs().sum() > 0
    torch.testing.assert_close(outputs[1]["advantages"], outputs[0]["advantages"], atol=1e-5, rtol=1e-5)


def length_reward(completions, **kwargs):
    return [float(len(c) % 3) for c in completions]


def stream(n=16):
    return IterableDataset.from_generator(lambda: ({"prompt": f"What is {i} + 3?"} for i in range(n)))


def test_iterable_dataset_trains_like_trl_and_refills_from_the_stream(tiny_model_dir, tmp_path):
    rs_args = cpu_training_args(tmp_path / "rs", risk_beta=0.0, dynamic_sampling=False, learning_rate=1e-2)
    params = []
    for cls, args in ((GRPOTrainer, grpo_config_like(rs_args)), (RSGRPOTrainer, rs_args)):
        trainer = cls(model=tiny_model_dir, reward_funcs=length_reward, args=args, train_dataset=stream())
        trainer.train()
        params.append(torch.cat([p.detach().flatten() for p in trainer.model.parameters()]))
    torch.testing.assert_close(params[1], params[0])

    # Default config: dynamic sampling draws its refill prompts from a second pass over the stream.
    def mostly_constant(completions, prompts, **kwargs):
        return [float(len(c) % 2) if "1 +" in p else 1.0 for c, p in zip(completions, prompts)]

    args = cpu_training_args(tmp_path / "ds", max_steps=2)
    trainer = RSGRPOTrainer(model=tiny_model_dir, reward_funcs=mostly_constant, args=args, train_dataset=stream())
    trainer.train()
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert logged[-1]["dynamic_sampling/refill_prompts_drawn"] > 0


class CountingEnvironment:
    """Owns its data and reward, as TRL's environments may: the prompt comes from `reset`, the reward from state."""

    tickets = 0

    def reset(self, **kwargs):
        CountingEnvironment.tickets += 1
        self.ticket = CountingEnvironment.tickets
        return "Count to three."

    def bump(self, amount: int) -> str:
        """Add to the count.

        Args:
            amount: how much to add.
        """
        self.ticket += amount
        return str(self.ticket)

    def get_reward(self):
        return float(self.ticket % 3)


@pytest.fixture
def tool_tokenizer(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = (importlib.resources.files("trl") / "chat_templates" / "qwen2_5.jinja").read_text()
    return tokenizer


def test_environment_owned_data_and_rewards_train_like_trl(tiny_model_dir, tool_tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    rs_args = cpu_training_args(tmp_path / "rs", risk_beta=0.0, dynamic_sampling=False, learning_rate=1e-2)
    params = []
    for cls, args in ((GRPOTrainer, grpo_config_like(rs_args)), (RSGRPOTrainer, rs_args)):
        CountingEnvironment.tickets = 0
        trainer = cls(
            model=tiny_model_dir, args=args, processing_class=tool_tokenizer, environment_factory=CountingEnvironment
        )
        trainer.train()
        params.append(torch.cat([p.detach().flatten() for p in trainer.model.parameters()]))
    torch.testing.assert_close(params[1], params[0])

    trainer = RSGRPOTrainer(
        model=tiny_model_dir,
        args=cpu_training_args(tmp_path / "ds"),
        processing_class=tool_tokenizer,
        environment_factory=CountingEnvironment,
    )
    trainer.train()
    assert trainer.state.global_step == 2


def mistakes(tool_tokenizer):
    """Setups TRL rejects with its own message, as (trainer kwargs, config overrides)."""
    return {
        "no dataset, no environment": (dict(reward_funcs=length_reward), {}),
        "environment data without max_steps": (
            dict(processing_class=tool_tokenizer, environment_factory=CountingEnvironment),
            dict(max_steps=-1),
        ),
        "several environments without a dataset": (
            dict(processing_class=tool_tokenizer, environment_factory={"a": CountingEnvironment}),
            {},
        ),
        "iterable dataset with dispatch_batches": (
            dict(reward_funcs=length_reward, train_dataset=stream()),
            dict(accelerator_config={"dispatch_batches": True}),
        ),
    }


@pytest.mark.parametrize(
    "mistake",
    [
        "no dataset, no environment",
        "environment data without max_steps",
        "several environments without a dataset",
        "iterable dataset with dispatch_batches",
    ],
)
def test_same_errors_as_trl_for_the_same_mistakes(tiny_model_dir, tool_tokenizer, tmp_path, monkeypatch, mistake):
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    kwargs, overrides = mistakes(tool_tokenizer)[mistake]
    messages = []
    for config_class, cls in ((GRPOConfig, GRPOTrainer), (RSGRPOConfig, RSGRPOTrainer)):
        args = cpu_training_args(tmp_path, config_class=config_class, **overrides)
        with pytest.raises(Exception) as info:
            cls(model=tiny_model_dir, args=args, **kwargs)
        messages.append((type(info.value), str(info.value)))
    assert messages[1] == messages[0]


class EchoEnvironment:
    """A second environment with no reward of its own: its rollouts are scored by a reward function."""

    def reset(self, **kwargs):
        return None

    def echo(self, text: str) -> str:
        """Echo a text.

        Args:
            text: what to echo.
        """
        return text


def test_mixed_environments_train_like_trl(tiny_model_dir, tool_tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    factories = {"count": CountingEnvironment, "echo": EchoEnvironment}
    dataset = Dataset.from_dict(
        {
            "prompt": [[{"role": "user", "content": f"Task {i}."}] for i in range(16)],
            "environment": ["count" if i % 2 else "echo" for i in range(16)],
        }
    )

    def echo_length(completions, environment, **kwargs):
        return [float(len(str(c)) % 3) if env == "echo" else None for c, env in zip(completions, environment)]

    rs_args = cpu_training_args(tmp_path / "rs", risk_beta=0.0, dynamic_sampling=False, learning_rate=1e-2)
    params = []
    for cls, args in ((GRPOTrainer, grpo_config_like(rs_args)), (RSGRPOTrainer, rs_args)):
        CountingEnvironment.tickets = 0
        trainer = cls(
            model=tiny_model_dir,
            reward_funcs=echo_length,
            args=args,
            train_dataset=dataset,
            processing_class=tool_tokenizer,
            environment_factory=factories,
        )
        trainer.train()
        params.append(torch.cat([p.detach().flatten() for p in trainer.model.parameters()]))
    torch.testing.assert_close(params[1], params[0])

    trainer = RSGRPOTrainer(
        model=tiny_model_dir,
        reward_funcs=echo_length,
        args=cpu_training_args(tmp_path / "ds"),
        train_dataset=dataset,
        processing_class=tool_tokenizer,
        environment_factory=factories,
    )
    trainer.train()
    assert trainer.state.global_step == 2


def test_reward_reading_a_rollout_field_trains_like_trl(tiny_model_dir, tmp_path):
    """TRL forwards a `rollout_func`'s extra fields to the reward functions: a reward that needs one is accepted."""

    def rollout(prompts, trainer):
        tokenizer = trainer.processing_class
        prompt_ids = [tokenizer(prompt, add_special_tokens=False)["input_ids"] for prompt in prompts]
        completion_ids = [[5 + i % 7, 9, tokenizer.eos_token_id] for i in range(len(prompts))]
        return {
            "prompt_ids": prompt_ids,
            "completion_ids": completion_ids,
            "logprobs": [[-1.0] * len(ids) for ids in completion_ids],
            "env_score": [float(i % 3) for i in range(len(prompts))],
        }

    seen = []

    def env_score_reward(completions, env_score, **kwargs):
        seen.extend(env_score)
        return env_score

    for dynamic_sampling in (False, True):
        args = cpu_training_args(tmp_path / str(dynamic_sampling), dynamic_sampling=dynamic_sampling)
        trainer = RSGRPOTrainer(
            model=tiny_model_dir,
            reward_funcs=env_score_reward,
            args=args,
            train_dataset=math_dataset(),
            rollout_func=rollout,
        )
        trainer.train()
        assert trainer.state.global_step == 2
    assert set(seen) == {0.0, 1.0, 2.0}
