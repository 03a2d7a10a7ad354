package api

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
)

// bucketFamily is one category of rate limit (general calls, and events in
// a family of their own so that a flood of events cannot starve the rest):
// a token bucket per tenant, refilled continuously at rate tokens a second
// up to burst.
type bucketFamily struct {
	rate  float64
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// decision is the outcome of one take, with what the headers report.
type decision struct {
	allowed   bool
	limit     int
	remaining int
	// reset is how long until the bucket is full again.
	reset time.Duration
	// retryAfter is how long until one token is available; zero when allowed.
	retryAfter time.Duration
}

func newBucketFamily(rate float64, burst int, now func() time.Time) *bucketFamily {
	return &bucketFamily{rate: rate, burst: float64(burst), now: now, buckets: make(map[string]*bucket)}
}

// take spends one token from key's bucket if it has one.
func (f *bucketFamily) take(key string) decision {
	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.buckets[key]
	if !ok {
		b = &bucket{tokens: f.burst, at: now}
		f.buckets[key] = b
	}
	if elapsed := now.Sub(b.at); elapsed > 0 {
		b.tokens = math.Min(f.burst, b.tokens+elapsed.Seconds()*f.rate)
		b.at = now
	}
	d := decision{limit: int(f.burst)}
	if b.tokens >= 1 {
		b.tokens--
		d.allowed = true
	} else {
		d.retryAfter = f.timeFor(1 - b.tokens)
	}
	d.remaining = int(math.Floor(b.tokens))
	d.reset = f.timeFor(f.burst - b.tokens)
	return d
}

func (f *bucketFamily) timeFor(tokens float64) time.Duration {
	return time.Duration(tokens / f.rate * float64(time.Second))
}

// rateLimit charges each request to the caller's tenant in the given family
// and reports the bucket in X-RateLimit-* headers on every response.
func (s *Server) rateLimit(f *bucketFamily) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			d := f.take(tenantID(c))
			h := c.Response().Header()
			h.Set("X-RateLimit-Limit", strconv.Itoa(d.limit))
			h.Set("X-RateLimit-Remaining", strconv.Itoa(d.remaining))
			h.Set("X-RateLimit-Reset", strconv.FormatInt(ceilSeconds(d.reset), 10))
			if !d.allowed {
				retry := max(ceilSeconds(d.retryAfter), 1)
				h.Set("Retry-After", strconv.FormatInt(retry, 10))
				e := apiError(http.StatusTooManyRequests, "rate_limited",
					fmt.Sprintf("rate limit exceeded; retry in %d s", retry))
				e.Details = map[string]int64{"retry_after_seconds": retry}
				return e
			}
			return next(c)
		}
	}
}

func ceilSeconds(d time.Duration) int64 {
	return int64(math.Ceil(d.Seconds()))
}
