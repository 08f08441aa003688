"""Chat templates of other GGUF model families render our conversation."""

from __future__ import annotations

import pytest

from inference.llm.formats import TemplateFormat

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Gemma-style: no system role, and says so through raise_exception.
NO_SYSTEM = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "<start_of_turn>{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{{ message['content'] }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
# Llama-3-style: a date helper in the template.
WITH_DATE = (
    "{{ bos_token }}Today: {{ strftime_now('%d %b %Y') }}{% for message in messages %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n{{ message['content'] }}"
    "<|eot_id|>{% endfor %}<|start_header_id|>assistant<|end_header_id|>\n\n"
)


def test_chatml_renders_system_history_and_question_in_order() -> None:
    fmt = TemplateFormat(CHATML, "", "<|im_end|>")
    text = fmt.render("SYS", "RULES", "Q2", [("Q1", "A1")])
    assert text.index("SYS\n\nRULES") < text.index("Q1") < text.index("A1") < text.index("Q2")
    assert text.endswith("<|im_start|>assistant\n")
    assert fmt.stop_strings == ("<|im_end|>",)


def test_a_template_without_a_system_role_gets_it_in_the_first_user_turn() -> None:
    text = TemplateFormat(NO_SYSTEM, "<bos>", "<eos>").render("SYS", "RULES", "Q", [])
    assert text.startswith("<bos><start_of_turn>user\nSYS\n\nRULES\n\nQ<end_of_turn>")
    assert "system" not in text


@pytest.mark.parametrize("history", [[], [("Q1", "A1")]])
def test_templates_with_date_helpers_render_the_same_all_day(history: list) -> None:
    fmt = TemplateFormat(WITH_DATE, "<|begin_of_text|>", "<|eot_id|>")
    assert fmt.render("S", "I", "Q", history) == fmt.render("S", "I", "Q", history)
