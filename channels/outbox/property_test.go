package outbox

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/kalcifer/kalcifer/channels"
	"github.com/kalcifer/kalcifer/store"
)

// Outcomes of one request to the fake provider.
const (
	taken     = "taken"     // accepted and answered
	refused   = "refused"   // a retryable refusal: not taken
	rejected  = "rejected"  // a permanent refusal: not taken
	cut       = "cut"       // taken, but the answer is lost (unsure)
	crashed   = "crashed"   // taken, then the process dies before recording
	throttled = "throttled" // a 429 with Retry-After: not taken
)

// TestPropertyAtMostOnce: under random provider failures and dispatcher
// crashes, every delivery ends in a final state; a provider without
// idempotency keys takes each message at most once; and a delivery
// recorded sent was taken.
func TestPropertyAtMostOnce(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(rt *rapid.T) {
		idempotent := rapid.Bool().Draw(rt, "idempotent")
		r := newRig(t, idempotent)
		outcomes := rapid.SliceOfN(rapid.SampledFrom([]string{taken, refused, rejected, cut, crashed, throttled}), 1, 60).Draw(rt, "outcomes")
		var mu sync.Mutex // the fake is called by several workers
		var mayHaveTaken = map[string]int{}
		call := 0
		r.fake.fail = func(m channels.Message) error {
			mu.Lock()
			defer mu.Unlock()
			o := outcomes[call%len(outcomes)]
			call++
			switch o {
			case refused:
				return channels.Retryable("503", 0, errors.New("unavailable"))
			case throttled:
				return channels.Retryable("429", time.Minute, errors.New("slow down"))
			case rejected:
				return channels.Permanent("400", errors.New("bad"))
			}
			mayHaveTaken[m.Key]++
			switch o {
			case cut:
				return &channels.Error{Retryable: true, Unsure: true, Err: errors.New("connection reset")}
			case crashed:
				return crash()
			}
			return nil
		}
		n := rapid.IntRange(1, 12).Draw(rt, "deliveries")
		for range n {
			r.commit(`{"subject": "s", "body": "b"}`, "email")
		}
		d := r.dispatcher(func(o *Options) {
			o.Workers = rapid.IntRange(1, 4).Draw(rt, "workers")
			o.Batch = rapid.IntRange(1, 8).Draw(rt, "batch")
		})
		for range 400 {
			r.drain(d)
			if !r.skipToNext(rt) {
				break
			}
		}
		ds := r.all()
		if !final(ds) {
			rt.Fatalf("deliveries still pending: %+v", ds)
		}
		_, accepted := r.fake.counts()
		for _, dl := range ds {
			if !idempotent && mayHaveTaken[dl.Key] > 1 {
				rt.Fatalf("%s reached a provider without idempotency keys %d times", dl.Key, mayHaveTaken[dl.Key])
			}
			if dl.Status == store.DeliverySent && accepted[dl.Key] == 0 {
				rt.Fatalf("%s recorded sent but never taken", dl.Key)
			}
			if dl.Status == store.DeliveryFailed && dl.ErrorCode == "" {
				rt.Fatalf("%s failed without a code", dl.Key)
			}
		}
	})
}

// skipToNext moves the clock to when the next pending delivery may go (a
// lease lapses, a backoff or cool-down ends, quiet hours end, a token
// comes), and up to a poll of the dispatcher's (1 s) later; it says
// whether anything is still pending.
func (r *rig) skipToNext(rt *rapid.T) bool {
	next := time.Time{}
	for _, dl := range r.all() {
		if dl.Status == store.DeliveryPending && (next.IsZero() || dl.ClaimUntil.Before(next)) {
			next = dl.ClaimUntil
		}
	}
	if next.IsZero() {
		return false
	}
	r.clock.Advance(max(next.Sub(r.clock.Now()), 0) + time.Duration(rapid.IntRange(0, 999).Draw(rt, "poll ms"))*time.Millisecond)
	return true
}

func final(ds []store.Delivery) bool {
	for _, d := range ds {
		if d.Status == store.DeliveryPending {
			return false
		}
	}
	return true
}

// TestPropertyQuietHours: nothing goes out inside the quiet window in the
// customer's zone, and everything goes out in the end.
func TestPropertyQuietHours(t *testing.T) {
	t.Parallel()
	zones := []string{"Europe/London", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "Pacific/Chatham", "UTC", ""}
	rapid.Check(t, func(rt *rapid.T) {
		r := newRig(t, false)
		start := rapid.IntRange(0, 24*60-1).Draw(rt, "start")
		end := rapid.IntRange(0, 24*60-1).Filter(func(e int) bool { return e != start }).Draw(rt, "end")
		q := store.QuietHours{Start: fmt.Sprintf("%02d:%02d", start/60, start%60), End: fmt.Sprintf("%02d:%02d", end/60, end%60),
			Channels: []string{"sms"}}
		r.settings(store.TenantSettings{QuietHours: &q})
		tz := rapid.SampledFrom(zones).Draw(rt, "zone")
		if _, err := r.st.Customers().PatchCustomer(t.Context(), r.tenant.ID, r.customer.ID, store.CustomerPatch{Timezone: &tz}, t0); err != nil {
			rt.Fatal(err)
		}
		// Start anywhere in the year, so daylight-saving changes come up.
		r.clock.Advance(time.Duration(rapid.IntRange(0, 365*24*60).Draw(rt, "offset")) * time.Minute)
		for range rapid.IntRange(1, 5).Draw(rt, "messages") {
			r.commit(`{"body": "b"}`, "sms", "email")
		}
		d := r.dispatcher(nil)
		for range 100 {
			r.drain(d)
			if !r.skipToNext(rt) {
				break
			}
		}
		for _, dl := range r.all() {
			if dl.Status != store.DeliverySent {
				rt.Fatalf("at %s, quiet hours %s–%s in %q: %+v", r.clock.Now(), q.Start, q.End, tz, dl)
			}
			if dl.Channel != "sms" {
				continue
			}
			if _, quiet := QuietUntil(&q, "sms", tz, *dl.SentAt); quiet {
				rt.Fatalf("sent at %s (%s in %q) inside quiet hours %s–%s", dl.SentAt, dl.SentAt.In(zone(tz)).Format("15:04"), tz, q.Start, q.End)
			}
		}
	})
}

func zone(tz string) *time.Location {
	loc, err := time.LoadLocation(tz)
	if err != nil || tz == "" {
		return time.UTC
	}
	return loc
}

// TestPropertyThrottle: in any window, an account sends at most
// rate × window + burst messages.
func TestPropertyThrottle(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(rt *rapid.T) {
		r := newRig(t, false)
		rate := float64(rapid.IntRange(1, 40).Draw(rt, "rate tenths")) / 10
		burst := rapid.IntRange(1, 5).Draw(rt, "burst")
		r.account(store.ProviderConfig{Name: "limited", Kind: "fake", DefaultFor: []string{"sms"}, Rate: rate, Burst: burst})
		n := rapid.IntRange(1, 30).Draw(rt, "messages")
		for range n {
			r.commit(`{"body": "b"}`, "sms")
		}
		d := r.dispatcher(func(o *Options) { o.Workers = rapid.IntRange(1, 8).Draw(rt, "workers") })
		for range 5000 {
			r.drain(d)
			if !r.skipToNext(rt) {
				break
			}
		}
		r.fake.mu.Lock()
		times := append([]time.Time(nil), r.fake.times...)
		r.fake.mu.Unlock()
		if len(times) != n {
			rt.Fatalf("%d of %d sent", len(times), n)
		}
		for i := range times {
			for j := i; j < len(times); j++ {
				if window := times[j].Sub(times[i]).Seconds(); float64(j-i+1) > rate*window+float64(burst)+1e-9 {
					rt.Fatalf("%d sends within %.3fs exceed %.1f/s with a burst of %d", j-i+1, window, rate, burst)
				}
			}
		}
	})
}
