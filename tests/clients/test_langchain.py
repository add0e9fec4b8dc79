"""LangChain's OpenAI integration (`langchain-openai`, pinned) against tandem router +
sims: invoke and stream of ChatOpenAI and of the completions-API OpenAI LLM, tools bound
with bind_tools coming back as parsed tool calls, and with_structured_output (json_schema)
coming back as a validated pydantic object."""

import sys

import stack

N_TESTS = 5
if __name__ == "__main__":
    stack.bootstrap("LangChain tests", N_TESTS)

from harness import run  # noqa: E402
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage  # noqa: E402
from langchain_core.tools import tool  # noqa: E402
from langchain_openai import ChatOpenAI, OpenAI  # noqa: E402
from pydantic import BaseModel, Field  # noqa: E402

from stack import MODEL  # noqa: E402

TOOL_FLAGS = ("--enable-auto-tool-choice", "--tool-call-parser", "hermes")
MSGS = [SystemMessage("You are terse."), HumanMessage("Tell me about rivers.")]


def chat(sim_flags=(), ignore_eos=False, **kw):
    """ChatOpenAI on a fresh stack. ignore_eos (vLLM) makes the answer exactly max_tokens
    long; tool and structured-output tests leave it off so that the JSON can end."""
    r, _ = stack.stack(2, sim_flags)
    kw.setdefault("max_tokens", 10)
    if ignore_eos:
        kw["extra_body"] = {"ignore_eos": True}
    return ChatOpenAI(model=MODEL, base_url=r.base + "/v1", api_key="EMPTY", max_retries=0,
                      timeout=30, seed=7, **kw), r


def test_invoke():
    llm, r = chat(ignore_eos=True)
    m = llm.invoke(MSGS)
    assert isinstance(m, AIMessage) and isinstance(m.content, str) and m.content, m
    assert m.response_metadata["finish_reason"] == "length", m.response_metadata
    assert m.response_metadata["model_name"] == MODEL, m.response_metadata
    u = m.usage_metadata
    assert u["output_tokens"] == 10 and u["input_tokens"] > 0, u
    assert u["total_tokens"] == u["input_tokens"] + u["output_tokens"], u
    # The completions-API LLM class on the same router.
    comp = OpenAI(model=MODEL, base_url=r.base + "/v1", api_key="EMPTY", max_retries=0,
                  max_tokens=6, seed=7)
    text = comp.invoke("Once upon a time")
    assert isinstance(text, str) and text, text


def test_stream():
    llm, _ = chat(ignore_eos=True, stream_usage=True)
    whole = llm.invoke(MSGS).content
    chunks = list(llm.stream(MSGS))
    assert len(chunks) >= 10, chunks
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c  # LangChain's own chunk merging
    assert total.content == whole, (total.content, whole)
    assert total.usage_metadata["output_tokens"] == 10, total.usage_metadata
    assert total.response_metadata.get("finish_reason") == "length", total.response_metadata


@tool
def get_weather(city: str, unit: str) -> str:
    """Current weather in a city; unit is celsius or fahrenheit."""
    return "sunny in %s (%s)" % (city, unit)


@tool
def get_time(zone: str) -> str:
    """Current time in a time zone."""
    return "noon in " + zone


def test_bind_tools():
    llm, _ = chat(TOOL_FLAGS, max_tokens=1000)
    named = llm.bind_tools([get_weather, get_time], tool_choice="get_time")
    m = named.invoke([HumanMessage("What time is it in Tokyo?")])
    assert len(m.tool_calls) == 1, m
    call = m.tool_calls[0]
    assert call["name"] == "get_time" and isinstance(call["args"], dict), call
    assert isinstance(call["args"].get("zone"), str) and call["id"], call
    assert get_time.invoke(call["args"]).startswith("noon in ")  # args fit the tool
    # "any" is LangChain's word for OpenAI's "required".
    anyc = llm.bind_tools([get_weather], tool_choice="any").invoke([HumanMessage("Weather?")])
    assert anyc.tool_calls and anyc.tool_calls[0]["name"] == "get_weather", anyc
    assert {"city", "unit"} <= set(anyc.tool_calls[0]["args"]), anyc.tool_calls
    assert not m.invalid_tool_calls and not anyc.invalid_tool_calls


class Person(BaseModel):
    """A person."""
    name: str = Field(description="full name")
    age: int
    languages: list[str]


def test_structured_output():
    llm, _ = chat(max_tokens=1000)
    p = llm.with_structured_output(Person, method="json_schema").invoke(
        "Invent a person.")
    assert isinstance(p, Person) and isinstance(p.age, int), p
    assert all(isinstance(x, str) for x in p.languages), p
    # include_raw: the raw message too, and no parsing error.
    out = llm.with_structured_output(Person, method="json_schema", include_raw=True).invoke(
        "Invent another person.")
    assert out["parsing_error"] is None and isinstance(out["parsed"], Person), out


def test_structured_output_json_mode():
    llm, _ = chat(max_tokens=1000)
    d = llm.with_structured_output(None, method="json_mode").invoke(
        "Reply with a JSON object.")
    assert isinstance(d, dict), d


TESTS = [test_invoke, test_stream, test_bind_tools, test_structured_output,
         test_structured_output_json_mode]

if __name__ == "__main__":
    assert len(TESTS) == N_TESTS
    only = sys.argv[1:]
    run([t for t in TESTS if not only or t.__name__ in only])
