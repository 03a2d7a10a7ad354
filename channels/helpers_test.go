package channels

import (
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRequire(t *testing.T) {
	now := func() time.Time { return time.Time{} }
	for _, c := range []struct {
		deps Deps
		http bool
		want string
	}{
		{Deps{HTTP: http.DefaultClient, Now: now}, true, ""},
		{Deps{Now: now}, false, ""},
		{Deps{Now: now}, true, "k: deps.HTTP and deps.Now are required"},
		{Deps{HTTP: http.DefaultClient}, true, "k: deps.HTTP and deps.Now are required"},
		{Deps{HTTP: http.DefaultClient}, false, "k: deps.Now is required"},
	} {
		got := ""
		if err := c.deps.Require("k", c.http); err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("%+v.Require(%v) = %q, want %q", c.deps, c.http, got, c.want)
		}
	}
}

func TestHTTPSBaseURL(t *testing.T) {
	for value, want := range map[string]string{
		"":                          "https://default.example",
		"https://api.example.com/":  "https://api.example.com",
		"https://api.example.com/x": "https://api.example.com/x",
		"http://api.example.com":    "",
		"https://u:p@api.example":   "",
		"https://api.example/?q=1":  "",
		"https://api.example/#f":    "",
		"https:///path":             "",
		"://":                       "",
	} {
		got, err := HTTPSBaseURL(value, "https://default.example/")
		if want == "" {
			if err == nil || !strings.Contains(err.Error(), "base_url must be an https URL") {
				t.Errorf("HTTPSBaseURL(%q) = %q, %v; want an error", value, got, err)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("HTTPSBaseURL(%q) = %q, %v; want %q", value, got, err, want)
		}
	}
}

func TestUniqueTokens(t *testing.T) {
	got := UniqueTokens([]string{" a ", "", "b", "a", "  "}, nil)
	if !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Errorf("UniqueTokens = %q", got)
	}
	upper := func(s string) (string, bool) { return strings.ToUpper(s), s != "skip" }
	if got := UniqueTokens([]string{"a", "A", "skip", "b"}, upper); !reflect.DeepEqual(got, []string{"A", "B"}) {
		t.Errorf("UniqueTokens with canon = %q", got)
	}
}

func TestSendEachToken(t *testing.T) {
	fail := map[string]error{
		"gone": Permanent("GONE", errors.New("gone")),
		"busy": Retryable("BUSY", 3*time.Second, errors.New("busy")),
		"lost": errors.New("connection lost"),
	}
	send := func(token string) (string, error) {
		if err := fail[token]; err != nil {
			return "", err
		}
		return "id-" + token, nil
	}
	if id, err := SendEachToken([]string{"a", "gone", "b"}, "GONE", nil, send); err != nil || id != "id-a,id-b" {
		t.Errorf("some took it: %q, %v", id, err)
	}

	_, err := SendEachToken([]string{"gone", "busy"}, "GONE", nil, send)
	e := Classify(err)
	if !e.Retryable || e.Code != "BUSY" || e.RetryAfter != 3*time.Second || e.Unsure ||
		!strings.Contains(err.Error(), "all 2 device tokens failed; unregistered tokens: gone") {
		t.Errorf("none took it: %+v (%v)", e, err)
	}
	_, err = SendEachToken([]string{"busy", "lost"}, "GONE", nil, send)
	if e := Classify(err); !e.Retryable || !e.Unsure || e.Code != "BUSY" {
		t.Errorf("an unsure attempt: %+v (%v)", e, err)
	}
	_, err = SendEachToken([]string{"gone"}, "GONE", nil, send)
	if e := Classify(err); e.Retryable || !strings.HasPrefix(err.Error(), "GONE: the device token failed; unregistered tokens: gone: gone") {
		t.Errorf("one token: %+v (%v)", e, err)
	}

	// A fatal failure ends the loop.
	var sent []string
	fatal := func(err error) bool { return Classify(err).Code == "BUSY" }
	record := func(token string) (string, error) {
		sent = append(sent, token)
		return send(token)
	}
	if _, err := SendEachToken([]string{"busy", "a"}, "GONE", fatal, record); Classify(err).Code != "BUSY" || len(sent) != 1 {
		t.Errorf("fatal first: %v after %q", err, sent)
	}
	sent = nil
	if id, err := SendEachToken([]string{"a", "busy", "b"}, "GONE", fatal, record); err != nil || id != "id-a" || len(sent) != 2 {
		t.Errorf("fatal after a success: %q, %v after %q", id, err, sent)
	}
}

func TestCollapseKey(t *testing.T) {
	if CollapseKey("") != "" || CollapseKey("k-1") != "k-1" {
		t.Error("short key not kept")
	}
	long := strings.Repeat("x", 65)
	if c := CollapseKey(long); len(c) != 64 || c == long[:64] {
		t.Errorf("long key: %q", c)
	}
}
