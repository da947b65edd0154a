package token

// Test-only access to the package's internals (as net/http's export_test.go).

// Purge removes every entry.
func (c *Cache) Purge() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		clear(s.idx)
		clear(s.entries)
		s.entries = s.entries[:0]
		s.mu.Unlock()
	}
}
