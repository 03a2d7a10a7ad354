package cluster

import (
	"errors"
	"fmt"
	"testing"
)

// TestErrorsSurviveTheReply checks what a grain's error becomes for its
// caller: application errors keep their code, and a grain that failed
// because something it called was unavailable stays retryable.
func TestErrorsSurviveTheReply(t *testing.T) {
	app := ErrorFromReply(ReplyFromError(&GrainError{Code: "active_instance", Message: "busy"}))
	var ge *GrainError
	if !errors.As(app, &ge) || ge.Code != "active_instance" || Retryable(app) {
		t.Fatalf("application error came back as %v", app)
	}
	nested := fmt.Errorf("resume instance x: %w", &UnavailableError{Reason: "target is not running"})
	back := ErrorFromReply(ReplyFromError(nested))
	if !errors.Is(back, ErrUnavailable) || !Retryable(back) {
		t.Fatalf("nested unavailability came back as %v", back)
	}
	timedOut := ErrorFromReply(ReplyFromError(fmt.Errorf("enrol: %w", ErrTimeout)))
	if !Retryable(timedOut) {
		t.Fatalf("nested timeout came back as %v", timedOut)
	}
	other := ErrorFromReply(ReplyFromError(errors.New("disk full")))
	if !errors.As(other, &ge) || ge.Code != "internal" || Retryable(other) {
		t.Fatalf("plain error came back as %v", other)
	}
}
