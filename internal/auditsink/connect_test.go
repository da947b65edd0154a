package auditsink

import "testing"

func TestRedactURLs(t *testing.T) {
	tests := []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://user:secret@nats.example.com:4222", "nats://***@nats.example.com:4222"},
		{"nats://token@h:4222", "nats://***@h:4222"},
		{"nats://u:p@ss@h:4222", "nats://***@h:4222"}, // '@' in the password
		{"nats://a:b@h1:4222,nats://h2:4222, tls://c:d@h3:4222", "nats://***@h1:4222,nats://h2:4222, tls://***@h3:4222"},
		{"embedded", "embedded"},
		{"not a url@host", "not a url@host"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := RedactURLs(tt.in); got != tt.want {
			t.Errorf("RedactURLs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
