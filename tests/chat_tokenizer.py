"""A tiny word-level chat tokenizer for data tests, built offline with the ``tokenizers`` library."""

from __future__ import annotations

CHATML = (  # Qwen2's template, default system prompt included
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
INST = (  # Llama-2 / Mistral style
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' ' + message['content'] + eos_token }}{% endif %}{% endfor %}"
)
SPECIAL = ["<|im_start|>", "<|im_end|>", "<video>", "<audio>"]
WORDS = "system user assistant You are a helpful assistant. \n what is playing violin who plays girl [INST] [/INST] be"


def make_tokenizer(template: str):
    """A fast tokenizer over a few words, the ChatML/[INST] special tokens and <video>/<audio> placeholders."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {word: index for index, word in enumerate(["<unk>", "<pad>", "<s>", "</s>", *SPECIAL, *WORDS.split(" ")])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(" ", "removed"), pre_tokenizers.Split("\n", "isolated")]
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>",
                                        bos_token="<s>", eos_token="</s>", additional_special_tokens=SPECIAL)
    tokenizer.chat_template = template
    return tokenizer


def ids_of(tokenizer, names: list[str]) -> dict[str, int]:
    return {name: tokenizer.convert_tokens_to_ids(f"<{name}>") for name in names}
