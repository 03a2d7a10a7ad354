package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kalcifer/kalcifer/actors/actorpb"
)

var (
	// ErrTimeout means the call's deadline passed before a reply arrived: the grain may or may not have
	// handled the message.
	ErrTimeout = errors.New("grain call timed out")
	// ErrUnavailable means the message could not be handled now (no member hosts the kind, the grain
	// stopped, crashed or is backing off after crashes, the node is shutting down); a later call may succeed.
	ErrUnavailable = errors.New("grain unavailable")
	// ErrCrashed marks an ErrUnavailable caused by the grain panicking on this very message. Whether the
	// message had durable effects before the panic depends on the grain, so callers retry it only if it is
	// idempotent.
	ErrCrashed = errors.New("grain crashed")
)

// GrainError is an application error a grain returned; it travels between nodes as an ErrorReply.
type GrainError struct {
	Code    string
	Message string
}

func (e *GrainError) Error() string {
	if e.Message == "" {
		return e.Code
	}
	return e.Code + ": " + e.Message
}

// UnavailableError carries why a grain could not handle a message and, after crashes, how long the
// identity backs off. It matches ErrUnavailable (and ErrCrashed for a crash) with errors.Is.
type UnavailableError struct {
	Reason     string
	RetryAfter time.Duration
	crashed    bool
}

func (e *UnavailableError) Error() string {
	msg := ErrUnavailable.Error() + ": " + e.Reason
	if e.RetryAfter > 0 {
		msg += fmt.Sprintf(" (retry after %s)", e.RetryAfter)
	}
	return msg
}

func (e *UnavailableError) Is(target error) bool {
	return target == ErrUnavailable || (e.crashed && target == ErrCrashed)
}

// Retryable reports whether the failure is transient, so another attempt may succeed. It says nothing about
// whether repeating the message is safe: after ErrTimeout or ErrCrashed only an idempotent message should be
// sent again. Cancellation by the caller and application errors are not retryable.
func Retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	return errors.Is(err, ErrUnavailable) || errors.Is(err, ErrTimeout)
}

// retryAfter is the wait an error asks for before another attempt, zero when it names none.
func retryAfter(err error) time.Duration {
	var ue *UnavailableError
	if errors.As(err, &ue) {
		return ue.RetryAfter
	}
	return 0
}

// ErrorFromReply turns the runtime's error envelope back into the typed error the grain side meant.
func ErrorFromReply(r *actorpb.ErrorReply) error {
	switch r.GetKind() {
	case actorpb.ErrorReply_KIND_CRASHED:
		return &UnavailableError{Reason: "crashed: " + r.GetMessage(), crashed: true}
	case actorpb.ErrorReply_KIND_BACKOFF:
		return &UnavailableError{
			Reason:     "backing off after crashes: " + r.GetMessage(),
			RetryAfter: time.Duration(r.GetRetryAfterMs()) * time.Millisecond,
		}
	case actorpb.ErrorReply_KIND_UNAVAILABLE:
		return &UnavailableError{Reason: r.GetMessage(), RetryAfter: time.Duration(r.GetRetryAfterMs()) * time.Millisecond}
	default:
		return &GrainError{Code: r.GetCode(), Message: r.GetMessage()}
	}
}

// ReplyFromError is the envelope a grain adapter sends for a returned error; errors that are not a
// *GrainError become code "internal" so the caller still gets the message text.
func ReplyFromError(err error) *actorpb.ErrorReply {
	if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrTimeout) {
		// A grain that failed because another grain or the store timed out
		// keeps the failure retryable for its own caller.
		return &actorpb.ErrorReply{Kind: actorpb.ErrorReply_KIND_UNAVAILABLE, Message: err.Error(),
			RetryAfterMs: retryAfter(err).Milliseconds()}
	}
	var ge *GrainError
	if !errors.As(err, &ge) {
		ge = &GrainError{Code: "internal", Message: err.Error()}
	}
	return &actorpb.ErrorReply{Kind: actorpb.ErrorReply_KIND_APPLICATION, Code: ge.Code, Message: ge.Message}
}
