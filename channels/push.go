package channels

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// UniqueTokens returns a push message's device tokens trimmed of space, in
// order, without empty ones or repeats. canon, when not nil, puts each
// token in its provider's form and says whether the provider takes it at
// all; a token it refuses is left out.
func UniqueTokens(tokens []string, canon func(token string) (string, bool)) []string {
	seen := make(map[string]bool, len(tokens))
	var out []string
	for _, t := range tokens {
		t = strings.TrimSpace(t)
		if canon != nil {
			var ok bool
			if t, ok = canon(t); !ok {
				continue
			}
		}
		if t == "" || seen[t] {
			continue
		}
		seen[t] = true
		out = append(out, t)
	}
	return out
}

// SendEachToken sends a push notification to each token with send, which
// returns the provider's id for the notification it took. It succeeds when
// any token took the notification, with the ids joined by commas; when none
// did it returns CombinePushFailures of the failures, naming the tokens that
// failed with the code unregistered. A failure that fatal (if not nil)
// holds is one every further token would meet too: it ends the loop, and
// it is returned unless a token already took the notification.
func SendEachToken(tokens []string, unregistered string, fatal func(error) bool, send func(token string) (string, error)) (string, error) {
	var ids, gone []string
	var errs []*Error
	for _, token := range tokens {
		id, err := send(token)
		if err == nil {
			ids = append(ids, id)
			continue
		}
		e := Classify(err)
		if fatal != nil && fatal(err) {
			if len(ids) > 0 {
				break
			}
			return "", e
		}
		if e.Code == unregistered {
			gone = append(gone, token)
		}
		errs = append(errs, e)
	}
	if len(ids) > 0 {
		return strings.Join(ids, ","), nil
	}
	return "", CombinePushFailures(errs, len(tokens), gone)
}

// CombinePushFailures reports a push notification no device token took,
// from the failures of the total tokens it was sent to: the most retryable
// failure, since a retry could still reach the devices it failed for,
// unsure if any attempt was, and naming the unregistered tokens, which the
// provider no longer knows, so they can be removed. errs is not empty.
func CombinePushFailures(errs []*Error, total int, unregistered []string) error {
	best := errs[0]
	unsure := false
	for _, e := range errs {
		unsure = unsure || e.Unsure
		if e.Retryable && (!best.Retryable || e.RetryAfter > best.RetryAfter) {
			best = e
		}
	}
	out := *best
	out.Unsure = out.Retryable && unsure
	detail := "all " + strconv.Itoa(total) + " device tokens failed"
	if total == 1 {
		detail = "the device token failed"
	}
	if len(unregistered) > 0 {
		detail += "; unregistered tokens: " + strings.Join(unregistered, ", ")
	}
	out.Err = fmt.Errorf("%s: %w", detail, best.Err)
	return &out
}

// CollapseKey derives a push notification's collapse key (APNs's
// apns-collapse-id, FCM's collapse_key) from a delivery's idempotency key:
// a retry then replaces, rather than adds to, a notification still waiting
// for the device. APNs bounds apns-collapse-id to 64 bytes, so longer or
// unusual keys are hashed.
func CollapseKey(key string) string {
	if key == "" {
		return ""
	}
	if len(key) <= 64 && printableASCII(key) {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
