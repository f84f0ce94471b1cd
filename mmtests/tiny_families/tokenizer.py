"""A word-level tokenizer for the shapes world, saved in Hugging Face format (the tiny zoo and the tiny families use it).

Special ids follow what both CLIP implementations expect: padding is 0, and end-of-text is the
highest id, so open_clip's argmax pooling and Hugging Face's first-EOS pooling pick the same token.
"""

from __future__ import annotations

from tokenizers import AddedToken, Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<start_of_text>", "<end_of_text>"


def build_word_tokenizer(words: list[str], vocab_size: int, context_length: int, *, append_eos: bool = True,
                         extra_specials: tuple[str, ...] = (), **kwargs) -> PreTrainedTokenizerFast:
    """Vocabulary: specials, `extra_specials`, then `words`, then unused slots, then EOS at `vocab_size - 1`.

    `append_eos=False` (for causal language models) adds only BOS when encoding. `extra_specials`
    (such as "<image>") are matched whole, before lower-casing and splitting.
    """
    words = sorted(set(words))
    n_free = vocab_size - 4 - len(extra_specials) - len(words)
    if n_free < 0:
        raise ValueError(f"{len(words)} words do not fit a vocabulary of {vocab_size}; raise vocab_size")
    tokens = [PAD, UNK, BOS, *extra_specials, *words, *(f"<unused{i}>" for i in range(n_free)), EOS]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    tok = Tokenizer(WordLevel(vocab, unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    single = f"{BOS} $A {EOS}" if append_eos else f"{BOS} $A"
    tok.post_processor = processors.TemplateProcessing(
        single=single, special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])]
    )
    if extra_specials:
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in extra_specials])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=context_length,
        **kwargs,
    )
