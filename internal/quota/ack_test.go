package quota

import (
	"encoding/json"
	"strconv"
	"testing"
)

func TestParseCounterAck(t *testing.T) {
	tests := []struct {
		in    string
		total int64
		seq   uint64
		ok    bool
	}{
		{`{"stream":"PDP_QUOTAS","seq":12,"val":"5"}`, 5, 12, true},
		{`{"stream":"PDP_QUOTAS","domain":"hub","seq":22802063,"val":"101"}`, 101, 22802063, true},
		{`{"stream":"Q","seq":3,"val":"-1"}`, -1, 3, true},
		{`{"stream":"Q","seq":3,"val":"0"}`, 0, 3, true},
		{`{"stream":"Q","seq":18446744073709551615,"val":"9"}`, 0, 0, false}, // 20 digits: json's business
		{`{"stream":"Q","seq":3,"val":"99999999999999999999"}`, 0, 0, false},
		{`{"stream":"Q","seq":3}`, 0, 0, false},
		{`{"stream":"Q","val":"3"}`, 0, 0, false},
		{`{"stream":"Q","seq":3,"val":""}`, 0, 0, false},
		{`{"stream":"Q","seq":3,"val":"1e3"}`, 0, 0, false},
		{`{"stream":"Q","seq":3,"val":"+3"}`, 0, 0, false},
		{`{"stream":"Q", "seq": 3, "val": "3"}`, 0, 0, false},
		{`{"error":{"code":503,"description":"x"},"stream":"Q","seq":3,"val":"3"}`, 0, 0, false},
		{`{"stream":"a\"seq\":7,\"val\":\"1","seq":3,"val":"2"}`, 2, 3, true},
		{`{"stream":"Q","seq":3,"val":"3"} `, 0, 0, false},
		{`{"stream":"Q","seq":3,"val":"3","batch":"x"}`, 0, 0, false},
		{`{"stream":"Q","seq":3,"seq":4,"val":"3"}`, 0, 0, false},
		{`{"stream":"Q`, 0, 0, false},
		{``, 0, 0, false},
	}
	for _, tt := range tests {
		total, seq, ok := parseCounterAck([]byte(tt.in))
		if ok != tt.ok || total != tt.total || seq != tt.seq {
			t.Errorf("%s: %d %d %v, want %d %d %v", tt.in, total, seq, ok, tt.total, tt.seq, tt.ok)
		}
	}
}

// FuzzParseCounterAck: where the fast reading and encoding/json both read
// an acknowledgement, they agree.
func FuzzParseCounterAck(f *testing.F) {
	for _, s := range []string{`{"stream":"PDP_QUOTAS","seq":12,"val":"5"}`, `{"stream":"Q","domain":"d","seq":1,"val":"-7"}`,
		`{"stream":"a\"seq\":7,\"val\":\"1","seq":3,"val":"2"}`, `{"error":{"code":400},"seq":1,"val":"1"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		total, seq, ok := parseCounterAck(b)
		if !ok {
			return
		}
		var ack pubAck
		if json.Unmarshal(b, &ack) != nil {
			return // not JSON: never sent by a server
		}
		v, err := strconv.ParseInt(ack.Val, 10, 64)
		if ack.Error == nil && err == nil && (v != total || ack.Seq != seq) {
			t.Fatalf("%q: fast %d/%d, json %d/%d", b, total, seq, v, ack.Seq)
		}
	})
}
