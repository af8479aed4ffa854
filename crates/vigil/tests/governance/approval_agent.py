#!/usr/bin/env python3
"""A refund agent that asks Vigil before running a destructive tool, waits for a human decision when the
guard says "pending", and only then runs the tool. Everything is traced with the real OpenTelemetry SDK.
Usage: approval_agent.py API_BASE OTLP_ENDPOINT API_KEY TOOL ARGS_JSON
  e.g. approval_agent.py http://127.0.0.1:7070 http://127.0.0.1:4318 vk_... delete_customer_account '{"customer_id": "c_123"}'
API_KEY is sent as `Authorization: Bearer KEY` to the Vigil API and to the OTLP exporter.
PyPI packages it needs: opentelemetry-sdk opentelemetry-exporter-otlp-proto-http
Prints one JSON line: {"trace_id", "decision", "status", "approval_id", "executed", "rule", "reason"}.
Exit codes: 0 done (allow or deny), 2 Vigil API error, 3 no human decision within 120 s.
"""
import json, sys, time, urllib.error, urllib.request
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

api_base, otlp, api_key, tool, args_json = sys.argv[1:6]
api_base, args = api_base.rstrip("/"), json.loads(args_json)
AUTH = {"Authorization": f"Bearer {api_key}"}
SESSION, USER, AGENT = "sess-approval-1", "user-42", "refund-agent"

tp = TracerProvider(resource=Resource.create({"service.name": AGENT, "deployment.environment.name": "production",
                                              "service.version": "2.0.1"}))
tp.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=otlp.rstrip("/") + "/v1/traces",
                                                           headers={"authorization": f"Bearer {api_key}"})))
trace.set_tracer_provider(tp)
tracer = trace.get_tracer("approval-agent")


class ApiError(Exception):
    pass


def call(method, path, body=None, timeout=15):
    headers = dict(AUTH)
    propagate.inject(headers)  # W3C traceparent for the current span
    data = None
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    req = urllib.request.Request(api_base + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise ApiError(f"{method} {path} -> {e.code}: {e.read().decode(errors='replace')}")


def run_tool(name, arguments):  # simulated destructive work, no real side effect
    return {"deleted": True, **arguments}


def run():
    with tracer.start_as_current_span("refund-agent run", attributes={
            "openinference.span.kind": "AGENT", "session.id": SESSION, "user.id": USER}) as root:
        trace_id = format(root.get_span_context().trace_id, "032x")
        g = call("POST", "/api/v1/guard/tool-call", {"tool": tool, "arguments": args, "agent": AGENT,
                 "environment": "production", "session_id": SESSION, "user_id": USER})
        decision, status, approval_id = g["decision"], "immediate", g.get("approval_id")
        if decision == "pending":
            deadline, status = time.monotonic() + 120, "pending"
            while status == "pending":
                if time.monotonic() > deadline:
                    print(f"no decision on approval {approval_id} within 120 s", file=sys.stderr)
                    return 3
                try:
                    a = call("GET", f"/api/v1/approvals/{approval_id}?wait=30s", timeout=45)
                except (TimeoutError, urllib.error.URLError) as e:
                    if isinstance(e, urllib.error.URLError) and not isinstance(e.reason, TimeoutError):
                        raise
                    continue
                status = a["status"]
            decision = a.get("decision") if a.get("decision") in ("allow", "deny") else \
                ("allow" if status == "approved" else "deny")
        if decision == "allow" and approval_id:
            # Redeem the approval right before acting: it covers this exact call, once.
            try:
                call("POST", f"/api/v1/approvals/{approval_id}/redeem", {"tool": tool, "arguments": args})
            except ApiError as e:
                print(f"approval not redeemed: {e}", file=sys.stderr)
                decision, status = "deny", "redeem_refused"
        executed = decision == "allow"
        if executed:
            with tracer.start_as_current_span(tool, attributes={
                    "openinference.span.kind": "TOOL", "tool.name": tool,
                    "input.value": args_json, "input.mime_type": "application/json"}) as s:
                s.set_attribute("output.value", json.dumps(run_tool(tool, args)))
        else:
            root.set_attribute("guard.denied_reason", g.get("reason") or f"approval {status}")
        print(json.dumps({"trace_id": trace_id, "decision": decision, "status": status, "approval_id": approval_id,
                          "executed": executed, "rule": g.get("rule"), "reason": g.get("reason")}), flush=True)
        return 0


try:
    code = run()
except ApiError as e:
    print(e, file=sys.stderr)
    code = 2
finally:
    tp.force_flush()
    tp.shutdown()
sys.exit(code)
