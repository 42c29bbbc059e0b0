"""An open LLM answering chats offline: what the local server serves for `--model smollm2-135m`.

>>> chat = OpenChat("smollm2-135m")                                        # doctest: +SKIP
>>> chat.reply(messages_for(test[0])).text                           # doctest: +SKIP
'Price is $19.99'

An instruct model reads the chat through its own chat template; an assistant message at the
end is a prefill that the answer continues (the course's chats end with "Price is $"). A base
model without a template (Gemma 3 270M, Meta's base Llamas) reads the course's plain prompt of
the item instead. Decoding is greedy, so an answer depends only on the chat; the prompt is
read once, and the answer stops at the end-of-turn token or after `max_tokens` tokens.
"""

from __future__ import annotations

import threading

import torch

import open_models
import settings
from chat import item_from_messages
from chat_api import Reply


class OpenChat:
    """An open model (by registry name, or a loaded model and tokenizer) as a chat endpoint.

    One answer at a time, with `settings.llm_threads()` threads: concurrent requests queue, and
    every answer is the same whatever else is asked at the same moment.
    """

    def __init__(self, name: str | None = None, model=None, tokenizer=None):
        self.name = name or settings.open_model()
        if model is None:
            model, tokenizer = open_models.load(self.name)
        self.model, self.tokenizer = model.eval(), tokenizer
        self._lock = threading.Lock()

    def prompt(self, messages: list[dict]) -> str:
        """The text the model continues: the chat in its template, prefill included, or the
        course's plain prompt of the item for a model without one."""
        prefill = messages[-1]["content"] if messages[-1]["role"] == "assistant" else ""
        if not self.tokenizer.chat_template:
            return item_from_messages(messages).test_prompt()
        head = messages[:-1] if prefill else messages
        return self.tokenizer.apply_chat_template(head, tokenize=False,
                                                  add_generation_prompt=True) + (prefill or "")

    def reply(self, messages: list[dict], max_tokens: int = 5) -> Reply:
        """The greedy answer to `messages`, prefill included, with its token counts."""
        if not messages:
            raise ValueError("the chat has no messages")
        ids = self.tokenizer(self.prompt(messages), add_special_tokens=False)["input_ids"]
        with self._lock, settings.torch_threads(settings.llm_threads()):
            new = greedy(self.model, ids, max(1, max_tokens), self.tokenizer.eos_token_id)
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        prefill = messages[-1]["content"] if messages[-1]["role"] == "assistant" else ""
        return Reply(f"{prefill}{text}", len(ids), len(new))


@torch.inference_mode()
def greedy(model, ids: list[int], max_tokens: int, stop: int | None) -> list[int]:
    """Up to `max_tokens` likeliest next tokens after `ids`, ending at `stop` (not included).

    The prompt is read once, and only its last position goes through the output layer.
    """
    out = model(torch.tensor([ids]), use_cache=True, logits_to_keep=1)
    new: list[int] = []
    while len(new) < max_tokens:
        token = int(out.logits[0, -1].argmax())
        if token == stop:
            break
        new.append(token)
        if len(new) < max_tokens:
            out = model(torch.tensor([[token]]), cache=out.cache,
                        use_cache=True)
    return new
