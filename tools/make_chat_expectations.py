#!/usr/bin/env python3
"""Renders a set of conversations with transformers' `apply_chat_template` and the tiny fixture's tokenizer
(whose tokenizer_config.json carries GLM-4.7-Flash's real chat template), and writes them with the exact
expected text to tests/fixtures/chat/expectations.json for tests/chat_template.rs.

    pip install transformers jinja2   # no torch needed
    python3 tools/make_chat_expectations.py
"""
import json
import pathlib

import transformers
from transformers import PreTrainedTokenizerFast

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests/fixtures/glm-tiny"
OUT = ROOT / "tests/fixtures/chat/expectations.json"

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
SEARCH = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the web. Returns the top «n» results.",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}, "n": {"type": "integer"}, "fresh": {"type": "boolean"}},
            "required": ["query"],
        },
    },
}

# A question, an answer with its reasoning, and a follow-up question.
MATH = [
            {"role": "user", "content": "What is 3*7?"},
            {"role": "assistant", "content": "21", "reasoning_content": "3 times 7 is 21."},
            {"role": "user", "content": "And 3*8?"},
]

CASES = [
    {"name": "single_user", "messages": [{"role": "user", "content": "Hello!"}]},
    {
        "name": "system_and_user",
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "What is 2+2?"},
        ],
    },
    {
        "name": "thinking_off",
        "messages": [{"role": "user", "content": "Hi"}],
        "kwargs": {"enable_thinking": False},
    },
    {
        "name": "thinking_on_explicit",
        "messages": [{"role": "user", "content": "Hi"}],
        "kwargs": {"enable_thinking": True},
    },
    {"name": "no_generation_prompt", "messages": [{"role": "user", "content": "Hi"}], "add_generation_prompt": False},
    {
        "name": "multi_turn",
        "messages": [
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": "Name a color."},
            {"role": "assistant", "content": "Blue."},
            {"role": "user", "content": "Another one, in French  "},
            {"role": "assistant", "content": "  Rouge.\n"},
            {"role": "user", "content": "Thanks! Now a number, with 中文 and émojis 🙂"},
        ],
    },
    {
        "name": "reasoning_in_history",
        "messages": MATH
        + [{"role": "assistant", "content": "24", "reasoning_content": "\n3 times 8 is 24.\n"}],
        "add_generation_prompt": False,
    },
    {
        "name": "reasoning_in_history_then_user",
        "messages": MATH,
    },
    {
        "name": "reasoning_kept_clear_thinking_false",
        "messages": MATH,
        "kwargs": {"clear_thinking": False},
    },
    {
        "name": "think_tags_inside_content",
        "messages": [
            {"role": "user", "content": "Q1"},
            {"role": "assistant", "content": "<think>\nLet me see.\n</think>\n\nA1"},
            {"role": "user", "content": "Q2"},
            {"role": "assistant", "content": "<think>Hmm.</think>A2"},
        ],
        "add_generation_prompt": False,
    },
    {
        "name": "content_parts",
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "Sys part."}]},
            {"role": "user", "content": [{"type": "text", "text": "Part one. "}, {"type": "text", "text": "Part two."}]},
        ],
    },
    {
        "name": "tools_declared",
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [WEATHER, SEARCH],
    },
    {
        "name": "tools_with_system",
        "messages": [
            {"role": "system", "content": "You can call tools."},
            {"role": "user", "content": "Weather in Paris?"},
        ],
        "tools": [WEATHER],
        "kwargs": {"enable_thinking": False},
    },
    {
        "name": "tool_round_trip",
        "messages": [
            {"role": "user", "content": "Weather in Paris and Rome? Also search GPUs."},
            {
                "role": "assistant",
                "content": "",
                "reasoning_content": "I need the weather.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}},
                    },
                    {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Rome"}}},
                    {
                        "id": "call_3",
                        "type": "function",
                        "function": {
                            "name": "search",
                            "arguments": {"query": "GPU \"prices\"", "n": 3, "fresh": True, "filters": {"site": "ex.com", "tags": ["a", "ü"]}},
                        },
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18°C, sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": "{\"temp\": 21}"},
            {"role": "tool", "tool_call_id": "call_3", "content": "3 results"},
        ],
        "tools": [WEATHER, SEARCH],
    },
    {
        "name": "tool_round_trip_then_answer_and_user",
        "messages": [
            {"role": "system", "content": "Use tools when useful."},
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
            },
            {"role": "tool", "content": "18°C"},
            {"role": "assistant", "content": "It is 18°C in Paris.", "reasoning_content": "The tool said 18."},
            {"role": "user", "content": "Thanks."},
        ],
        "tools": [WEATHER],
        "kwargs": {"enable_thinking": False},
    },
]


def main():
    tok = PreTrainedTokenizerFast.from_pretrained(str(FIXTURE))
    template = json.loads((FIXTURE / "tokenizer_config.json").read_text())["chat_template"]
    out = {"transformers_version": transformers.__version__, "cases": []}
    for case in CASES:
        add_gen = case.get("add_generation_prompt", True)
        def render(tokenize):
            return tok.apply_chat_template(
                case["messages"],
                tools=case.get("tools"),
                add_generation_prompt=add_gen,
                tokenize=tokenize,
                chat_template=template,
                **case.get("kwargs", {}),
            )

        text, ids = render(False), render(True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        entry = dict(case)
        entry["add_generation_prompt"] = add_gen
        entry["expected"] = text
        entry["expected_ids"] = list(ids)
        out["cases"].append(entry)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(CASES)} cases to {OUT}")


if __name__ == "__main__":
    main()
