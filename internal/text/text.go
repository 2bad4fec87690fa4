// Package text shortens messages to the lengths the Kubernetes API accepts.
package text

import "unicode/utf8"

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
