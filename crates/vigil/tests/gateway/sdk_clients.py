#!/usr/bin/env python3
"""The official `openai` and `anthropic` SDKs against Vigil's gateway, in front of
shared/tools/mock_llm.py. Usage: sdk_clients.py GATEWAY_BASE VIGIL_KEY MOCK_BASE

Run by crates/vigil/tests/it/gateway.rs, which writes the gateway config and then checks the spans.
Prints one line per check and `all gateway checks passed`; exits non-zero on the first failure.
"""
import json
import sys
import time
import urllib.request

import anthropic
import openai

BASE, KEY, MOCK, VKEY = sys.argv[1:5]
oai = openai.OpenAI(base_url=BASE + "/v1", api_key=KEY, max_retries=0)
ant = anthropic.Anthropic(base_url=BASE, api_key=KEY, max_retries=0)
TOOLS_OAI = [{"type": "function", "function": {"name": "lookup_order", "description": "Find an order",
              "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}]
TOOLS_ANT = [{"name": "lookup_order", "description": "Find an order",
              "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}}]


def hits():
    with urllib.request.urlopen(MOCK + "/hits") as r:
        return json.load(r)


def check(name, cond, detail=""):
    if not cond:
        print(f"FAIL {name}: {detail}", flush=True)
        sys.exit(1)
    print(f"ok   {name}", flush=True)


# 1. Retries then failover: the first target always answers 500.
r = oai.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hello"}],
                                extra_headers={"x-vigil-session": "sess-gw", "x-vigil-user": "user-gw",
                                               "x-vigil-tags": "team=support,app=web"})
check("failover answers from the second target", r.choices[0].message.content.startswith("Mock answer"), r)
h = hits()
check("the failing target was retried (1 + 2 retries)", h.get("model:m1-fail500") == 3, h)

# 2. The circuit of the failing target is open now: the next call skips it.
r = oai.chat.completions.create(model="fast", messages=[{"role": "user", "content": "again"}])
check("an open circuit skips the failing target", hits().get("model:m1-fail500") == 3 and r.choices[0].message.content)
# After `open_for`, one probe goes through (and fails, re-opening the circuit).
time.sleep(1.2)
oai.chat.completions.create(model="fast", messages=[{"role": "user", "content": "probe"}])
check("a half-open circuit lets exactly one probe through", hits().get("model:m1-fail500") == 4, hits())

# 3. OpenAI streaming with tool calls, joined to the caller's trace.
parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
stream = oai.chat.completions.create(model="mockoai/gpt-4o-mini", stream=True, tools=TOOLS_OAI,
                                     messages=[{"role": "user", "content": "where is A-1001"}],
                                     extra_headers={"traceparent": parent})
calls, finish = {}, None
for chunk in stream:
    for c in chunk.choices:
        for tc in c.delta.tool_calls or []:
            calls.setdefault(tc.index, {"name": "", "args": ""})
            calls[tc.index]["name"] += tc.function.name or ""
            calls[tc.index]["args"] += tc.function.arguments or ""
        finish = c.finish_reason or finish
check("OpenAI stream delivers the tool call", calls.get(0, {}).get("name") == "lookup_order" and finish == "tool_calls", calls)
check("tool arguments arrive intact", json.loads(calls[0]["args"]) == {"query": "where is A-1001"}, calls)

# 4. Anthropic SDK, same format, streaming and not.
m = ant.messages.create(model="mockant/claude-haiku-4-5", max_tokens=100, messages=[{"role": "user", "content": "hi"}])
check("Anthropic SDK gets an Anthropic message", m.content[0].type == "text" and m.stop_reason == "end_turn", m)
with ant.messages.stream(model="mockant/claude-haiku-4-5", max_tokens=100, tools=TOOLS_ANT,
                         messages=[{"role": "user", "content": "find A-7"}]) as s:
    final = s.get_final_message()
check("Anthropic stream delivers the tool use", final.stop_reason == "tool_use" and final.content[0].name == "lookup_order", final)

# 5. Cross-format: an OpenAI client served by an Anthropic model, with tools and a tool result.
r = oai.chat.completions.create(model="claude-via-openai", tools=TOOLS_OAI,
                                messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "order A-2?"}])
tc = r.choices[0].message.tool_calls[0]
check("OpenAI client gets an OpenAI tool call from an Anthropic model",
      r.choices[0].finish_reason == "tool_calls" and tc.function.name == "lookup_order" and json.loads(tc.function.arguments)["query"] == "order A-2?", r)
r2 = oai.chat.completions.create(model="claude-via-openai", tools=TOOLS_OAI, messages=[
    {"role": "user", "content": "order A-2?"},
    {"role": "assistant", "content": None, "tool_calls": [tc.model_dump()]},
    {"role": "tool", "tool_call_id": tc.id, "content": "{\"status\": \"shipped\"}"}])
check("the tool result goes back as an Anthropic tool_result", r2.choices[0].finish_reason == "stop" and r2.usage.total_tokens > 0, r2)
stream = oai.chat.completions.create(model="claude-via-openai", stream=True, stream_options={"include_usage": True},
                                     messages=[{"role": "user", "content": "stream please"}])
text, usage = "", None
for chunk in stream:
    for c in chunk.choices:
        text += c.delta.content or ""
    usage = chunk.usage or usage
check("an Anthropic stream reaches an OpenAI client as chunks with usage", text.startswith("Mock answer") and usage and usage.total_tokens > 0, (text, usage))

# ... and an Anthropic client served by an OpenAI-format model, streaming with tools.
m = ant.messages.create(model="gpt-via-anthropic", max_tokens=50, tools=TOOLS_ANT, messages=[{"role": "user", "content": "A-9?"}])
check("Anthropic client gets tool_use from an OpenAI model", m.stop_reason == "tool_use" and m.content[-1].input == {"query": "A-9?"}, m)
with ant.messages.stream(model="gpt-via-anthropic", max_tokens=50, messages=[{"role": "user", "content": "tell me"}]) as s:
    final = s.get_final_message()
check("an OpenAI stream reaches an Anthropic client as events", final.content[0].text.startswith("Mock answer") and final.usage.output_tokens > 0, final)

# 6. Errors in the caller's format.
try:
    oai.chat.completions.create(model="mockoai/x-fail429", messages=[{"role": "user", "content": "hi"}])
    check("429 is reported", False)
except openai.RateLimitError as e:
    check("upstream 429 after retries is an openai.RateLimitError", e.status_code == 429)
try:
    ant.messages.create(model="mockoai/x-garbage", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    check("garbage is reported", False)
except anthropic.APIStatusError as e:
    check("malformed upstream JSON is a 502 with a clear message", e.status_code == 502 and "not valid JSON" in str(e), e)
try:
    openai.OpenAI(base_url=BASE + "/v1", api_key="vk_" + "x" * 40, max_retries=0).chat.completions.create(
        model="fast", messages=[{"role": "user", "content": "hi"}])
    check("bad key refused", False)
except openai.AuthenticationError:
    check("a wrong Vigil key is an openai.AuthenticationError", True)

# 7. Embeddings and the model list.
e = oai.embeddings.create(model="mockoai/text-embedding-3-small", input=["a", "b"])
check("embeddings pass through", len(e.data) == 2 and len(e.data[0].embedding) == 16)
names = [m.id for m in oai.models.list()]
check("GET /v1/models lists the configured aliases", {"fast", "claude-via-openai", "gpt-via-anthropic"} <= set(names), names)
# 7b. A hanging upstream: the first target answers only after SLOW_MS (2 s); its first-token timeout
# is 300 ms, so the gateway gives up on it (no retries help a timeout twice over) and fails over.
t0 = time.time()
r = oai.chat.completions.create(model="slowpoke", messages=[{"role": "user", "content": "are you there"}],
                                extra_headers={"x-vigil-cache": "off"})
elapsed = time.time() - t0
check("a hanging upstream times out and the next target answers", r.choices[0].message.content and elapsed < 2.0, elapsed)

# 8. Caching: exact (same request, keys in any order), opt-out, semantic, and hits served as streams.
def cached(**kw):
    raw = oai.chat.completions.with_raw_response.create(model="cheap-cached", **kw)
    return raw.headers.get("x-vigil-cache"), raw.parse()

before = hits().get("model:gpt-4o-mini", 0)
h1, r1 = cached(messages=[{"role": "user", "content": "cache me"}], temperature=0)
h2, r2 = cached(temperature=0, messages=[{"content": "cache me", "role": "user"}])
check("the same request is answered from the exact cache", h1 is None and h2 == "hit" and r2.choices[0].message.content == r1.choices[0].message.content, (h1, h2))
check("a cache hit does not reach the upstream", hits().get("model:gpt-4o-mini", 0) == before + 1, hits())
h3, _ = cached(messages=[{"role": "user", "content": "cache me"}], temperature=0, extra_headers={"x-vigil-cache": "off"})
check("x-vigil-cache: off bypasses the cache", h3 is None and hits().get("model:gpt-4o-mini", 0) == before + 2)
h4, r4 = cached(messages=[{"role": "system", "content": "You are terse."}, {"role": "user", "content": "cache me"}], temperature=0)
check("a different request with the same question is a semantic hit", h4 == "semantic-hit" and r4.choices[0].message.content == r1.choices[0].message.content, h4)
text = "".join(c.choices[0].delta.content or "" for c in oai.chat.completions.create(
    model="cheap-cached", stream=True, temperature=0, messages=[{"role": "user", "content": "cache me"}]) if c.choices)
check("a cached answer is replayed as a stream", text == r1.choices[0].message.content, text)

# 9. Rate limits: `limited` allows 2 requests per minute.
for i in range(2):
    oai.chat.completions.create(model="limited", messages=[{"role": "user", "content": f"limit {i}"}])
try:
    oai.chat.completions.create(model="limited", messages=[{"role": "user", "content": "limit 2"}])
    check("the third request in a minute is refused", False)
except openai.RateLimitError as e:
    check("the third request in a minute is a 429 with Retry-After", 0 < int(e.response.headers["retry-after"]) <= 60 and "2 requests per minute" in str(e), e)

# 10. A virtual key: allowed models, then a budget that one call exhausts.
vk = openai.OpenAI(base_url=BASE + "/v1", api_key=VKEY, max_retries=0)
try:
    vk.chat.completions.create(model="gpt-via-anthropic", messages=[{"role": "user", "content": "hi"}])
    check("a model outside the key's list is refused", False)
except openai.PermissionDeniedError:
    check("a model outside the key's list is refused (403)", True)
r = vk.chat.completions.create(model="fast", messages=[{"role": "user", "content": "spend it"}])
check("the key's first call goes through", r.choices[0].message.content)
try:
    vk.chat.completions.create(model="fast", messages=[{"role": "user", "content": "spend more"}])
    check("an exhausted budget refuses calls", False)
except openai.RateLimitError as e:
    check("an exhausted budget is a 429 saying so", "budget" in str(e) and int(e.response.headers["retry-after"]) > 0, e)
# 11. A client that goes away before the answer: the call is recorded as cancelled.
import httpx
try:
    httpx.post(BASE + "/v1/chat/completions", timeout=0.5,
               headers={"authorization": "Bearer " + KEY, "x-vigil-cache": "off", "x-vigil-session": "sess-gone"},
               json={"model": "mockoai/m2-slow", "messages": [{"role": "user", "content": "never mind"}]})
    check("the client gives up", False)
except httpx.TimeoutException:
    check("the client gave up after 0.5 s", True)
# 12. The project's tool policy applies to tool calls in model answers: with
# gateway_tool_calls = "block", a denied call refuses the answer (403 naming the rule) ...
DELETE_TOOL = [{"type": "function", "function": {"name": "delete_everything", "description": "Wipe an account",
                "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}]
try:
    oai.chat.completions.create(model="mockoai/gpt-4o-mini", tools=DELETE_TOOL, extra_headers={"x-vigil-cache": "off"},
                                messages=[{"role": "user", "content": "wipe the account"}])
    check("a denied tool call in a model answer is blocked", False)
except openai.PermissionDeniedError as e:
    check("a denied tool call in a model answer is blocked (403, rule named)",
          "delete_everything" in str(e) and "no-destruction" in str(e), e)
# ... while a stream, already on its way to the client, is delivered and the call flagged on its span.
stream = oai.chat.completions.create(model="mockoai/gpt-4o-mini", stream=True, tools=DELETE_TOOL,
                                     extra_headers={"x-vigil-cache": "off", "x-vigil-session": "sess-policy"},
                                     messages=[{"role": "user", "content": "wipe it, streaming"}])
names = [tc.function.name for c in stream if c.choices for tc in (c.choices[0].delta.tool_calls or [])
         if tc.function and tc.function.name]
check("a streamed denied tool call is delivered (and flagged on the span)", names == ["delete_everything"], names)
print("all gateway checks passed", flush=True)
