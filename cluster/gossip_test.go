package cluster

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// memberlist's log lines keep their level, and the line that says this member refuted its own death
// tells the node, which must then come back as a new member.
func TestLogWriter(t *testing.T) {
	var out bytes.Buffer
	refuted := 0
	w := logWriter{logger: slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug})), refuted: func() { refuted++ }}
	for _, line := range []string{
		"2026/11/26 10:00:00 [DEBUG] memberlist: Stream connection from=127.0.0.1:5000\n",
		"2026/11/26 10:00:01 [WARN] memberlist: Refuting a suspect message (from: b)\n",
		"2026/11/26 10:00:02 [WARN] memberlist: Refuting a dead message (from: b)\n",
		"2026/11/26 10:00:03 [ERR] memberlist: Failed to send ping\n",
	} {
		if _, err := w.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	if refuted != 1 {
		t.Fatalf("refuted called %d times, want once (for the dead message only)", refuted)
	}
	logs := out.String()
	for _, want := range []string{`"level":"DEBUG","msg":"memberlist: Stream connection`, `"level":"WARN","msg":"memberlist: Refuting a dead message (from: b)"`, `"level":"ERROR","msg":"memberlist: Failed to send ping"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
}
