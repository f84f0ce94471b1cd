"""Hugging Face `from_pretrained` loads that tell "not available here" from "broken".

A hub id not in the local cache is `ModelUnavailable`; a local folder that does not exist, weights that do not
read or do not fit the config (missing, unexpected or mismatched keys), or a folder without tokenizer files
are an `EntryError` naming the entry, the file and the fix.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..config import is_local_path
from ..errors import EntryError, ModelUnavailable

PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "tokenizer.model", "spiece.model",
                   "sentencepiece.bpe.model")
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")
EXAMPLES = 4  # keys named in a message


def _reason(err: BaseException) -> str:
    """The library's one-line reason, without its traceback."""
    first = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
    return f"{err.__class__.__name__}: {first[:240]}"


class Checkpoint:
    """One model entry's `model` value, checked before and after each `from_pretrained`."""

    def __init__(self, entry: str | None, model: str, *, online: bool | None = None):
        if online is None:
            online = os.environ.get("HF_HUB_OFFLINE", "0") not in ("1", "true", "True", "ON", "YES")
        self.entry, self.model, self.online = entry, model, online
        self.where = f"[models.{entry}]" if entry else f"the model entry with model = {model!r}"
        self.local = is_local_path(model)
        self.path = Path(model).expanduser()
        if self.local and not self.path.exists():
            raise EntryError(f"{self.where}: model folder {model!r} does not exist (relative paths are relative to "
                             f"the matrix file); fix the path in {self.where}")
        if self.local and not self.path.is_dir():
            raise EntryError(f"{self.where}: model {model!r} is a file; from_pretrained needs the checkpoint's "
                             f"folder (config.json, weights, tokenizer files); fix the path in {self.where}")
        if self.local and not self.weights():
            raise EntryError(f"{self.where}: model folder {model!r} has no weights file (model.safetensors or "
                             f"pytorch_model.bin; it holds {self.listing()}); save the model into it "
                             "(save_pretrained) or point 'model' at the folder that has them")

    def weights(self) -> list[str]:
        return sorted({p.name for pattern in WEIGHT_PATTERNS for p in self.path.glob(pattern)})

    def listing(self) -> str:
        return ", ".join(sorted(p.name for p in self.path.iterdir())) or "nothing"

    def what(self, files: str = "") -> str:
        """The file(s) a message is about: local files by path, hub checkpoints by id."""
        if not self.local:
            return f"Hugging Face checkpoint {self.model!r}"
        if not files:
            return f"folder {str(self.path)!r}"
        return f"{files} in {str(self.path)!r}" if ", " in files else repr(str(self.path / files))

    def unavailable(self, err: BaseException) -> ModelUnavailable:
        how = ("pass --mm-online or download it once where the hub is reachable (huggingface-cli download)"
               if not self.online else "check the id and the connection")
        return ModelUnavailable(f"{self.where}: Hugging Face model {self.model!r} is not available here "
                                f"({_reason(err)}); {how}, or set 'model' to a local folder")

    def broken(self, files: str, err: BaseException, fix: str = "") -> EntryError:
        fix = fix or f"re-save or re-download the checkpoint, or point 'model' in {self.where} at one that loads"
        return EntryError(f"{self.where}: {self.what(files)} cannot be loaded ({_reason(err)}); {fix}")

    def tokenizer_files(self) -> str:
        """The tokenizer files a local folder holds, for messages."""
        names = (*TOKENIZER_FILES, "tokenizer_config.json", "special_tokens_map.json")
        return ", ".join(n for n in names if self.local and (self.path / n).is_file())

    def _require(self, files: tuple[str, ...], what: str, fix: str, sep: str = ", ") -> None:
        """A local folder holding none of `files` is refused, naming what it holds: a library would otherwise
        substitute a default (a 2-token tokenizer) or fail with a hub error."""
        if self.local and not any((self.path / f).is_file() for f in files):
            raise EntryError(f"{self.where}: model folder {str(self.path)!r} has no {what} ({sep.join(files)}; it holds "
                             f"{self.listing()}); {fix}")

    def check_tokenizer_files(self) -> None:
        """A local folder without tokenizer files would get a default tokenizer substituted: refuse it."""
        self._require(TOKENIZER_FILES, "tokenizer files", "save the tokenizer into it (tokenizer.save_pretrained) so "
                      "the model's own vocabulary is used")

    def check_processor_files(self) -> None:
        """A local folder without the image processor's settings cannot preprocess images as the model was trained."""
        self._require(PROCESSOR_FILES, "image processor settings", "save the processor into it "
                      "(processor.save_pretrained) so images are resized and normalised as the model was trained", " or ")

    def load(self, files: str, loader):
        """`loader()`; a hub checkpoint missing here is unavailable, anything else failing is broken."""
        try:
            return loader()
        except (EntryError, ModelUnavailable):
            raise
        except OSError as err:
            if not self.local:
                raise self.unavailable(err) from err
            raise self.broken(files, err) from err
        except Exception as err:  # noqa: BLE001  (any library error: the entry cannot be used as configured)
            raise self.broken(files, err) from err

    def load_model(self, cls, **kwargs):
        """`cls.from_pretrained` with its loading info checked: weights that do not fit the config are an error."""
        weights = ", ".join(self.weights()) if self.local else ""

        def load():
            try:
                return cls.from_pretrained(self.model, output_loading_info=True, **kwargs)
            except RuntimeError as err:
                if "ignore_mismatched_sizes" not in str(err):
                    raise
                # Only to name the mismatched weights in the message; the entry fails either way.
                _, info = cls.from_pretrained(self.model, output_loading_info=True, ignore_mismatched_sizes=True,
                                              **kwargs)
                raise self.misfit(weights, info) from err

        model, info = self.load(weights, load)
        if any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")):
            raise self.misfit(weights, info)
        return model

    def misfit(self, weights: str, info: dict) -> EntryError:
        parts = []
        for key, said in (("missing_keys", "missing from the checkpoint"), ("unexpected_keys", "not in the model"),
                          ("mismatched_keys", "of another shape than the config's")):
            keys = sorted(k if isinstance(k, str) else f"{k[0]} (checkpoint {list(k[1])}, config {list(k[2])})"
                          if len(k) == 3 else k[0] for k in info.get(key) or ())
            if keys:
                more = f", and {len(keys) - EXAMPLES} more" if len(keys) > EXAMPLES else ""
                parts.append(f"{len(keys)} weights {said} ({', '.join(keys[:EXAMPLES])}{more})")
        config = self.what("config.json") if self.local else "its config.json"
        return EntryError(f"{self.where}: the weights of {self.what(weights)} do not fit the architecture in "
                          f"{config}: {'; '.join(parts)}; make config.json match the checkpoint it was saved with "
                          "(or re-save both with save_pretrained)")

    def check_vocabulary(self, tokenizer) -> None:
        """A tokenizer with nothing but special tokens is a substituted default, not the model's own."""
        vocab = set(tokenizer.get_vocab()) - set(getattr(tokenizer, "all_special_tokens", ()))
        if not vocab:
            raise EntryError(f"{self.where}: the tokenizer of {self.what()} has no vocabulary beyond its special "
                             "tokens (its tokenizer files are missing or empty); save the model's tokenizer with it "
                             "(tokenizer.save_pretrained)")
