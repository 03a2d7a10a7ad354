package channels

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"time"

	"github.com/kalcifer/kalcifer/netguard"
)

// ErrBadSignature is a status callback whose signature does not check out.
var ErrBadSignature = errors.New("bad signature")

// Error is a send that failed, classified for the dispatcher.
type Error struct {
	// Retryable says the provider may take the message if asked again
	// later: it was throttled, unavailable, or never reached.
	Retryable bool
	// Unsure says the request may have reached the provider, so whether it
	// took the message is unknown (a connection that broke after the
	// request was written).
	Unsure bool
	// RetryAfter is how long the provider asked to wait, when it asked.
	RetryAfter time.Duration
	// Code is the provider's error code, or the HTTP status, for the
	// delivery's record.
	Code string
	Err  error
}

func (e *Error) Error() string {
	if e.Code != "" {
		return e.Code + ": " + e.Err.Error()
	}
	return e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Permanent is a failure that asking again will not change: a bad address,
// a rejected credential, a malformed request.
func Permanent(code string, err error) error {
	return &Error{Code: code, Err: err}
}

// Retryable is a failure that may pass later; after is the wait the
// provider asked for, or 0.
func Retryable(code string, after time.Duration, err error) error {
	return &Error{Retryable: true, Code: code, RetryAfter: after, Err: err}
}

// Classify returns err as an *Error: itself if it is one, else a retryable
// and unsure failure, which is the safe reading of an error nobody
// classified.
func Classify(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Retryable: true, Unsure: true, Err: err}
}

// Response is an HTTP response read whole.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// maxResponse bounds what is read of a provider's response.
const maxResponse = 1 << 20

// Do sends req with client and reads the response. A transport error is
// returned classified: permanent when the guard refused the target,
// retryable and sure when the request was never written (nothing reached
// the provider), retryable and unsure otherwise.
// An HTTP error status is not an error here; HTTPError classifies it.
func Do(ctx context.Context, client *http.Client, req *http.Request) (Response, error) {
	var wrote bool
	trace := &httptrace.ClientTrace{WroteRequest: func(i httptrace.WroteRequestInfo) { wrote = wrote || i.Err == nil }}
	req = req.WithContext(httptrace.WithClientTrace(ctx, trace))
	resp, err := client.Do(req)
	if errors.Is(err, netguard.ErrRefused) {
		// A target on a private network stays there however often the
		// send is retried.
		return Response{}, Permanent("refused", err)
	}
	if err != nil {
		return Response{}, &Error{Retryable: true, Unsure: wrote, Err: fmt.Errorf("%s %s: %w", req.Method, req.URL.Redacted(), err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		// The provider answered, so it has the request; its answer is lost.
		return Response{}, &Error{Retryable: true, Unsure: true, Err: fmt.Errorf("read response to %s %s: %w", req.Method, req.URL.Redacted(), err)}
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: body}, nil
}

// DoOK is Do for an API that answers a request it took with a 2xx status:
// any other status is an error, which classify reads.
func DoOK(ctx context.Context, client *http.Client, req *http.Request, classify func(Response) error) (Response, error) {
	resp, err := Do(ctx, client, req)
	if err != nil {
		return Response{}, err
	}
	if resp.Status/100 != 2 {
		return Response{}, classify(resp)
	}
	return resp, nil
}

// HTTPError classifies an HTTP error status as providers document them:
// 408, 425, 429 and 5xx are retryable (honouring Retry-After), any other
// status is permanent. code is the provider's own error code, if its body
// gave one, and msg its explanation; the status stands in for a missing
// code and the start of the body for a missing message.
func HTTPError(r Response, code, msg string) error {
	if code == "" {
		code = strconv.Itoa(r.Status)
	}
	if msg == "" {
		msg = snippet(r.Body)
	}
	switch {
	case r.Status == http.StatusRequestTimeout, r.Status == http.StatusTooEarly, r.Status == http.StatusTooManyRequests, r.Status >= 500:
		return HTTPRetryable(r, code, msg)
	}
	return HTTPPermanent(r, code, msg)
}

// HTTPRetryable is an HTTP error response that the provider's error code
// says is retryable whatever its status (a rate limit reported as 400),
// honouring Retry-After.
func HTTPRetryable(r Response, code, msg string) error {
	return Retryable(code, RetryAfter(r.Header.Get("Retry-After")), fmt.Errorf("HTTP %d: %s", r.Status, msg))
}

// HTTPPermanent is an HTTP error response that the provider's error code
// says is permanent whatever its status.
func HTTPPermanent(r Response, code, msg string) error {
	return Permanent(code, fmt.Errorf("HTTP %d: %s", r.Status, msg))
}

// RetryAfter reads a Retry-After header in seconds. The HTTP-date form,
// which none of our providers send, reads as 0: the dispatcher's own
// backoff applies then.
func RetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return 0
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	if s == "" {
		return "no response body"
	}
	return s
}

// DecodeConfig decodes a provider configuration strictly into v: an unknown
// field is an error, so a misspelt setting is not silently ignored.
func DecodeConfig(config json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(config))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode provider configuration: %w", err)
	}
	return nil
}

// Required returns an error naming the first of the fields, given as
// name/value pairs, whose value is empty.
func Required(fields ...string) error {
	for i := 0; i+1 < len(fields); i += 2 {
		if strings.TrimSpace(fields[i+1]) == "" {
			return fmt.Errorf("%s is required", fields[i])
		}
	}
	return nil
}
