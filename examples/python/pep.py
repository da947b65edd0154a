"""An MCP server with its own enforcement point (PEP) asking mcp-pdp, in the
Python standard library only. Streamable HTTP with JSON answers; tools
lookup_product (public) and generate_qr_url (scope qr:generate in the demo
policy). Try it:

    pdp serve --dev --resource http://127.0.0.1:3002/mcp
    python3 examples/python/pep.py --pdp http://127.0.0.1:8181 --listen 127.0.0.1:3002
"""
import argparse, json, os, sys, urllib.error, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LIST_METHODS = {"tools/list", "prompts/list", "resources/list", "resources/templates/list"}
TOOLS = [{"name": "lookup_product", "inputSchema": {"type": "object"}},
         {"name": "generate_qr_url", "inputSchema": {"type": "object"}}]

def dispatch(msg, caller):
    """The MCP server itself: what it answers to an allowed request."""
    method, params = msg.get("method"), msg.get("params") or {}
    if method == "initialize":
        result = {"protocolVersion": params.get("protocolVersion", "2025-06-18"), "capabilities": {"tools": {}},
                  "serverInfo": {"name": "python-pep", "version": "1.0.0"}}
    elif method == "tools/list":
        result = {"tools": TOOLS}
    elif method == "tools/call":
        who = caller["sub"] if caller else "anonymous"
        result = {"content": [{"type": "text", "text": f"{params.get('name')} ran for {who}"}]}
    elif method == "ping":
        result = {}
    else:
        return {"jsonrpc": "2.0", "id": msg.get("id"), "error": {"code": -32601, "message": "Method not found"}}
    return {"jsonrpc": "2.0", "id": msg.get("id"), "result": result}

def decide(req):
    """Asks the PDP; None when no decision could be had (the caller fails closed)."""
    headers = {"Content-Type": "application/json"}
    if os.environ.get("PDP_API_KEY"):                   # when the PDP has auth.api_keys
        headers["X-PDP-API-Key"] = os.environ["PDP_API_KEY"]
    r = urllib.request.Request(ARGS.pdp + "/v1/decide", json.dumps(req).encode(), headers)
    try:
        with urllib.request.urlopen(r, timeout=2) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as e:                 # the PDP refused the request: say why, in the log
        print("pdp refused:", e.code, e.read().decode(errors="replace"), file=sys.stderr)
    except (OSError, ValueError) as e:
        print("pdp unavailable:", e, file=sys.stderr)
    return None

def rpc_error(msg, code, text):
    return {"jsonrpc": "2.0", "id": msg.get("id"), "error": {"code": code, "message": text}}

def handle(authorization, msg):
    """Returns (http_status, extra_headers, json_body_or_None)."""
    req = {"resource": ARGS.resource, "message": msg}
    if authorization:
        req["authorization"] = authorization
    d = decide(req)                                     # lists: the request phase first
    if d is None:
        return 503, {}, rpc_error(msg, -32603, "Authorization unavailable")
    if not d["allow"]:
        if "id" not in msg:
            return 202, {}, None                        # a refused notification: dropped
        headers = {"WWW-Authenticate": d["www_authenticate"]} if d.get("www_authenticate") else {}
        if d.get("tool_result") and d["http_status"] == 200:
            return 200, {}, {"jsonrpc": "2.0", "id": msg["id"], "result": d["tool_result"]}
        err = d.get("jsonrpc_error") or {"code": -32001, "message": "Authorization required (see WWW-Authenticate)"}
        return d["http_status"], headers, {"jsonrpc": "2.0", "id": msg["id"], "error": err}  # never an empty body
    if "id" not in msg:
        return 202, {}, None                            # an allowed notification
    answer = dispatch(msg, d.get("caller"))
    if msg.get("method") in LIST_METHODS and "result" in answer:
        f = decide({**req, "result": answer["result"]})  # the response phase: filter
        if f is None or not f["allow"]:
            return 503, {}, rpc_error(msg, -32603, "The list could not be filtered")
        answer = {"jsonrpc": "2.0", "id": msg["id"], "result": f["result"]}
    return 200, {}, answer

class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass                                            # quiet: one line a request is noise here

    def do_GET(self):
        if self.path == "/.well-known/oauth-protected-resource/mcp":
            self.reply(200, {"Access-Control-Allow-Origin": "*"},
                       {"resource": ARGS.resource, "authorization_servers": [ARGS.pdp + "/dev"]})
        else:
            self.reply(405, {"Allow": "POST"}, {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "POST only"}})

    def do_POST(self):
        try:
            msg = json.loads(self.rfile.read(min(int(self.headers.get("Content-Length", 0)), 1 << 20)))
            if not isinstance(msg, dict):
                raise ValueError("not one JSON-RPC message")
        except ValueError as e:
            return self.reply(400, {}, {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": str(e)}})
        self.reply(*handle(self.headers.get("Authorization"), msg))

    def reply(self, status, headers, body):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--pdp", default="http://127.0.0.1:8181")
    p.add_argument("--listen", default="127.0.0.1:3002")
    ARGS = p.parse_args()
    host, port = ARGS.listen.rsplit(":", 1)
    ARGS.resource = f"http://{ARGS.listen}/mcp"
    server = ThreadingHTTPServer((host, int(port)), Handler)
    print("serving", ARGS.resource, flush=True)
    server.serve_forever()
