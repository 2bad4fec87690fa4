// Package text shortens messages to the lengths the Kubernetes API accepts, and writes durations
// as people write them in a spec.
package text

import (
	"strings"
	"time"
	"unicode/utf8"
)

// Duration writes d as a spec would give it: 1h, 1h30m, 10m, 1m30s, 45s (time.Duration's own form
// without its zero minutes and seconds: 1h0m0s, 10m0s).
func Duration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// EventNoteMax is the longest note (in bytes) the API server accepts in an Event; a longer one
// is refused and the Event lost.
const EventNoteMax = 1024

// Truncate shortens s to at most n bytes, ending in "..." when cut, and never inside a UTF-8
// sequence (a cut one would be sent as U+FFFD, longer than what it replaced).
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
