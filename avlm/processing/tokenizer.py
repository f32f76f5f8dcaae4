"""A tiny byte-level BPE chat tokenizer that the code trains itself (no downloads), for ``avlm-tiny`` models and tests.

It mirrors the Qwen2 layout at toy size: byte-level BPE over a built-in English word list, the ChatML specials
``<|endoftext|>`` (padding) and ``<|im_start|>``/``<|im_end|>`` (end of a turn, the EOS), Qwen2's chat template with
its default system prompt, and one special placeholder token per modality: ``<video>``, ``<audio>``, ``<image>``.
Any text encodes (byte fallback through the 256 byte symbols); training is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from avlm.constants import PLACEHOLDER_TOKENS, TINY_SPECIAL_TOKENS

if TYPE_CHECKING:  # annotations only: importing this module stays free of transformers
    from transformers import PreTrainedTokenizerBase

CHATML_TEMPLATE = (  # Qwen2's template: default system prompt unless the first message is a system message
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL_TOKENS = list(TINY_SPECIAL_TOKENS)
PAD_TOKEN, EOS_TOKEN = SPECIAL_TOKENS[0], SPECIAL_TOKENS[2]

WORDS = """
system user assistant you are a helpful what who where when why how which is are was were be been the an and or
of in on at to from with without for by about into over under after before during while then than this that these
those it its he she they we i me my your our their his her them us there here not no yes do does did can could
will would should may might must have has had video audio image clip frame frames sound sounds music song voice
speech speaker speaking talk talking say says said sing singing play plays playing played instrument instruments
guitar piano violin drum drums flute trumpet cello bass louder quieter loud quiet soft noise noisy silence silent
man woman men women boy girl child children person people crowd dog dogs cat cats bird birds horse car cars train
bus truck bike bicycle street road city park room kitchen stage water rain wind fire sea river beach tree trees
sky sun night day morning evening red blue green yellow black white brown left right front back top bottom first
second third last one two three four five six seven eight nine ten many few some all each every more most less
describe description happen happens happening event events activity action scene background foreground camera
show shows shown see seen look looks watch hear heard listen listening answer question option options letter
word single short long detail details main people's video's begins ends start end middle moment time seconds
minute minutes count number how many color colour shape size big small large tall old young happy sad angry
running walking jumping dancing cooking eating drinking driving riding swimming flying barking laughing crying
clapping cheering shouting whispering ringing knocking engine siren bell applause
"""


def train_tiny_tokenizer(vocab_size: int = 512, model_max_length: int = 4096,
                         extra_words: Sequence[str] = ()) -> Any:
    """Train the tiny chat tokenizer on :data:`WORDS` (deterministic, offline, well under a second).

    Args:
        vocab_size: BPE vocabulary size, specials and the 256 byte symbols included.
        model_max_length: longest sequence the tokenizer reports (``tokenizer.model_max_length``).
        extra_words: domain words to favour (e.g. AV-Synth's answers): added to the corpus often enough, both after a
            space and at the start of a line (an answer follows ``assistant\n``), to become single tokens when
            ``vocab_size`` leaves room for them.

    Returns:
        A ``transformers.PreTrainedTokenizerFast`` with the ChatML template, ``eos_token="<|im_end|>"``,
        ``pad_token="<|endoftext|>"`` and the placeholder tokens ``<video>``, ``<audio>``, ``<image>``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size={vocab_size} is too small: the 256 byte symbols and {len(SPECIAL_TOKENS)} "
                         f"special tokens need at least {256 + len(SPECIAL_TOKENS)}")
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    sentences = [" ".join(WORDS.split()[start:start + 12]) for start in range(0, len(WORDS.split()), 12)] * 4
    if extra_words:
        sentences += [" " + " ".join(extra_words), "\n".join(extra_words)] * 8
    backend.train_from_iterator(sentences, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN,
        additional_special_tokens=[token for token in SPECIAL_TOKENS if token not in (EOS_TOKEN, PAD_TOKEN)],
        model_max_length=model_max_length, padding_side="left",
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def placeholder_token_ids(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    """Placeholder -> token id for the placeholders the tokenizer knows as single special tokens.

    Raises:
        ValueError: a placeholder token maps to the unknown token or several tokens.
    """
    ids = {}
    for name, token in PLACEHOLDER_TOKENS.items():
        encoded = tokenizer.encode(token, add_special_tokens=False)
        if len(encoded) != 1:
            raise ValueError(f"placeholder {token!r} encodes to {len(encoded)} tokens {encoded}; add it as a special "
                             f"token: tokenizer.add_special_tokens({{'additional_special_tokens': [{token!r}]}})")
        ids[name] = encoded[0]
    return ids


def add_placeholder_tokens(tokenizer: PreTrainedTokenizerBase) -> int:
    """Add ``<video>``, ``<audio>``, ``<image>`` as special tokens to an LLM's tokenizer; returns how many were new."""
    existing = set(tokenizer.get_vocab())
    missing = [token for token in PLACEHOLDER_TOKENS.values() if token not in existing]
    if not missing:
        return 0
    return tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
