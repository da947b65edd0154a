package stdio

import (
	"testing"
	"time"
)

// TestRestartBackoff: exits on their own soon after the start double the
// wait before the next start, up to the cap; an exit after a long run
// starts again from the first wait.
func TestRestartBackoff(t *testing.T) {
	p := &Pool{o: Options{RestartBackoff: 100 * time.Millisecond, MaxRestartBackoff: 10 * time.Second}}
	for i, tc := range []struct {
		lived time.Duration
		want  time.Duration
	}{
		{0, 100 * time.Millisecond},
		{time.Millisecond, 200 * time.Millisecond},
		{time.Second, 400 * time.Millisecond},
		{0, 800 * time.Millisecond},
		{0, 1600 * time.Millisecond},
		{0, 3200 * time.Millisecond},
		{0, 6400 * time.Millisecond},
		{0, 10 * time.Second},
		{0, 10 * time.Second},
		{time.Minute, 100 * time.Millisecond},
		{0, 200 * time.Millisecond},
	} {
		before := time.Now()
		p.failedLocked(tc.lived)
		got := p.notUntil.Sub(before)
		// notUntil is set after before was read: it lies in [want, want+slack).
		if got < tc.want || got > tc.want+time.Minute {
			t.Errorf("exit %d (lived %v): next start in %v, want %v", i, tc.lived, got, tc.want)
		}
	}
}

func TestParseEnvelope(t *testing.T) {
	for _, tc := range []struct {
		msg               string
		id, method        string
		request, response bool
		err               bool
	}{
		{msg: `{"jsonrpc":"2.0","id":1,"method":"a","params":{"x":[1,{"y":"}"}]}}`, id: `1`, method: `"a"`, request: true},
		{msg: `{"id":"a\"b","result":{}}`, id: `"a\"b"`, response: true},
		{msg: `{"id":2,"error":{"code":-1}}`, id: `2`, response: true},
		{msg: `{"method":"n","params":[]}`, method: `"n"`},
		{msg: `{}`},
		{msg: `{"\u006dethod":"n"}`, method: `"n"`},
		{msg: `{"method":"a","method":"b"}`, err: true},
		{msg: `{"method":1}`, err: true},
		{msg: `[]`, err: true},
		{msg: `"x"`, err: true},
	} {
		m, err := compact([]byte(tc.msg))
		if err != nil {
			t.Fatal(err)
		}
		e, err := parseEnvelope(m)
		if (err != nil) != tc.err {
			t.Errorf("%s: error %v", tc.msg, err)
			continue
		}
		if err != nil {
			continue
		}
		if got := string(m[e.id.start:e.id.end]); got != tc.id {
			t.Errorf("%s: id %q, want %q", tc.msg, got, tc.id)
		}
		if got := string(m[e.method.start:e.method.end]); got != tc.method {
			t.Errorf("%s: method %q, want %q", tc.msg, got, tc.method)
		}
		if e.isRequest() != tc.request || e.isResponse() != tc.response {
			t.Errorf("%s: request %v, response %v", tc.msg, e.isRequest(), e.isResponse())
		}
	}
}

func TestWireID(t *testing.T) {
	for _, tc := range []struct {
		raw string
		n   uint64
		ok  bool
	}{
		{"7", 7, true}, {"7.0", 7, true}, {"7e0", 7, true}, {"7.5", 0, false}, {`"7"`, 0, false}, {"-1", 0, false},
	} {
		n, ok := wireID([]byte(tc.raw))
		if n != tc.n || ok != tc.ok {
			t.Errorf("wireID(%s) = %d, %v; want %d, %v", tc.raw, n, ok, tc.n, tc.ok)
		}
	}
}
