package main

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mcp-pdp/pdp/bench/internal/mcpbench"
)

func TestAnswers(t *testing.T) {
	srv := httptest.NewServer(&server{a: newAnswers()})
	defer srv.Close()
	post := func(path, body string) (string, string) {
		t.Helper()
		resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: HTTP %d %s", path, resp.StatusCode, b)
		}
		return resp.Header.Get("Content-Type"), string(b)
	}
	ct, body := post("/mcp", `{"jsonrpc":"2.0","id":"a7","method":"tools/list"}`)
	if ct != "application/json" || !strings.HasPrefix(body, `{"jsonrpc":"2.0","id":"a7","result":{"tools":[`) {
		t.Fatalf("list: %s %.100s", ct, body)
	}
	if err := mcpbench.CheckList([]byte(body), false); err != nil {
		t.Fatal(err)
	}
	ct, body = post("/sse", `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"x"}}`)
	if ct != "text/event-stream" || body != "event: message\ndata: "+`{"jsonrpc":"2.0","id":3,"result":`+string(mcpbench.CallResult())+"}\n\n" {
		t.Fatalf("call: %s %q", ct, body)
	}
	resp, err := http.Post(srv.URL+"/mcp", "application/json", strings.NewReader(`{"jsonrpc":"2.0","method":"notifications/initialized"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("notification: HTTP %d", resp.StatusCode)
	}
	// GET: a stream that opens with a comment and stays open.
	resp, err = http.Get(srv.URL + "/mcp")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || resp.Header.Get("Content-Type") != "text/event-stream" || line != ": stream open\n" {
		t.Fatalf("stream: %v %q %q", err, resp.Header.Get("Content-Type"), line)
	}
}
