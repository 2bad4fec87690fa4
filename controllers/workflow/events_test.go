package workflow

import (
	"strings"
	"testing"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
)

// TestEvents_longNoteIsRecordedShortened: the API server refuses an Event whose note is over
// 1024 bytes (the Event would be lost); a long message (many invalid fields, long values) is
// recorded shortened, still valid UTF-8.
func TestEvents_longNoteIsRecordedShortened(t *testing.T) {
	t.Parallel()
	ns := setup(t)
	wf := apply(t, ns, `
metadata: {name: long-note}
spec:
  steps: [{name: a, image: example.com/w:1}]`)
	wf = get(t, wf)
	recordEvent(env.EventRecorder(t, "custody-test"), wf, "a", "", corev1.EventTypeWarning, "LongNote", "Validate",
		"Step a: "+strings.Repeat("é", 1000))
	eventually(t, "the long Event", func() error {
		notes := stepEvents(t, wf, "LongNote")["a"]
		if len(notes) != 1 {
			return errorf("LongNote Events about step a: %d", len(notes))
		}
		if n := notes[0]; len(n) > 1024 || !utf8.ValidString(n) || !strings.HasPrefix(n, "Step a: éé") || !strings.HasSuffix(n, "é...") {
			return errorf("note of %d bytes: %q", len(n), n)
		}
		return nil
	})
}
