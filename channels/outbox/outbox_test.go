package outbox

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/channels"
	"github.com/kalcifer/kalcifer/store"
)

func TestSendsEachPendingDeliveryOnce(t *testing.T) {
	r := newRig(t, false)
	ds := r.commit(`{"subject": "Hi {{ customer.email }}", "body": "b", "title": "t"}`, "email", "sms", "push", "whatsapp")
	d := r.dispatcher(nil)
	r.clock.Advance(1500 * time.Millisecond)
	if n, err := d.DispatchOnce(context.Background()); err != nil || n != 4 {
		t.Fatalf("first pass: %d, %v", n, err)
	}
	if n, err := d.DispatchOnce(context.Background()); err != nil || n != 0 {
		t.Fatalf("a second pass must find nothing pending: %d, %v", n, err)
	}
	for _, dl := range ds {
		got := r.get(dl.ID)
		want(t, got, store.DeliverySent, "")
		if got.Provider != "fake" || got.ProviderMessageID != "msg-"+dl.ID || got.Attempts != 1 || !got.SentAt.Equal(t0.Add(1500*time.Millisecond)) ||
			!got.AttemptStarted.IsZero() {
			t.Errorf("delivery %+v", got)
		}
	}
	_, accepted := r.fake.counts()
	if len(accepted) != 4 {
		t.Fatalf("provider took %v", accepted)
	}
}

func TestSkipsAndFailures(t *testing.T) {
	r := newRig(t, false)
	ctx := context.Background()
	if _, err := r.st.Customers().PatchCustomer(ctx, r.tenant.ID, r.customer.ID, store.CustomerPatch{Preferences: map[string]bool{"sms": false},
		Email: new(string)}, t0); err != nil {
		t.Fatal(err)
	}
	optedOut := r.commit(`{"body": "b"}`, "sms")[0]
	webhook := r.commit(`{"url": "https://example.com/h"}`, "webhook")[0]
	noEmail := r.commit(`{"subject": "s", "body": "b"}`, "email")[0]
	badTemplate := r.commit(`{"body": "{{ customer.name | nope }}"}`, "push")[0]
	noTemplate := r.commit(`{"template_id": "tpl_missing"}`, "push")[0]
	noAccount := r.commit(`{"body": "b", "provider": "twilio-eu"}`, "whatsapp")[0]
	r.drain(r.dispatcher(nil))
	want(t, r.get(optedOut.ID), store.DeliverySkipped, CodeOptedOut)
	want(t, r.get(webhook.ID), store.DeliverySent, "")
	want(t, r.get(noEmail.ID), store.DeliverySkipped, "no_address")
	want(t, r.get(badTemplate.ID), store.DeliveryFailed, "template_error")
	if e := r.get(badTemplate.ID).Error; !strings.Contains(e, "nope") {
		t.Errorf("template error %q does not name the filter", e)
	}
	want(t, r.get(noTemplate.ID), store.DeliveryFailed, CodeTemplateNotFound)
	want(t, r.get(noAccount.ID), store.DeliveryFailed, CodeNoProvider)
}

func TestStoredTemplate(t *testing.T) {
	r := newRig(t, false)
	tpl, err := r.st.Templates().CreateTemplate(context.Background(), store.Template{TenantID: r.tenant.ID, Name: "w", Channel: "email",
		Content: []byte(`{"subject": "Welcome {{ customer.email }}", "html": "<p>hi</p>"}`), CreatedAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	var got channels.Message
	r.fake.fail = func(m channels.Message) error { got = m; return nil }
	r.commit(`{"template_id": "`+tpl.ID+`"}`, "email")
	r.drain(r.dispatcher(nil))
	if got.Email == nil || got.Email.Subject != "Welcome alice@example.com" || got.Email.HTML != "<p>hi</p>" {
		t.Fatalf("sent %+v", got.Email)
	}
	if dl := r.all()[0]; dl.TemplateVersion != 1 {
		t.Fatalf("rendered from version %d, want 1 recorded", dl.TemplateVersion)
	}
}

// TestRetries: retryable failures come back after an exponential backoff
// (or the wait the provider asked for) until MaxAttempts; permanent ones
// fail at once with the provider's code.
func TestRetries(t *testing.T) {
	r := newRig(t, false)
	failures := 0
	r.fake.fail = func(m channels.Message) error {
		if m.Channel == "sms" {
			return channels.Permanent("21211", errors.New("invalid To"))
		}
		failures++
		if failures == 2 {
			return channels.Retryable("429", 10*time.Minute, errors.New("slow down"))
		}
		return channels.Retryable("503", 0, errors.New("unavailable"))
	}
	mail := r.commit(`{"subject": "s", "body": "b"}`, "email")[0]
	sms := r.commit(`{"body": "b"}`, "sms")[0]
	d := r.dispatcher(func(o *Options) { o.MaxAttempts = 4 })
	r.drain(d)
	want(t, r.get(sms.ID), store.DeliveryFailed, "21211")
	got := r.get(mail.ID)
	want(t, got, store.DeliveryPending, "503")
	// Jitter 0.5: three quarters of the 30 s backoff.
	if wait := got.ClaimUntil.Sub(t0); wait != 22500*time.Millisecond || got.Attempts != 1 {
		t.Fatalf("first retry after %v (attempts %d), want 22.5s", wait, got.Attempts)
	}
	r.clock.Advance(22 * time.Second)
	r.drain(d)
	if r.get(mail.ID).Attempts != 1 {
		t.Fatal("retried before its backoff")
	}
	r.clock.Advance(time.Second)
	r.drain(d)
	got = r.get(mail.ID)
	// The provider's Retry-After (10 min) beats the backoff (45 s).
	if wait := got.ClaimUntil.Sub(r.clock.Now()); got.ErrorCode != "429" || wait != 10*time.Minute {
		t.Fatalf("second retry: %s after %v", got.ErrorCode, wait)
	}
	r.clock.Advance(10 * time.Minute)
	r.drain(d)
	got = r.get(mail.ID)
	if wait := got.ClaimUntil.Sub(r.clock.Now()); wait != 90*time.Second || got.Attempts != 3 {
		t.Fatalf("third retry after %v (attempts %d), want 90s", wait, got.Attempts)
	}
	r.clock.Advance(2 * time.Minute)
	r.drain(d)
	want(t, r.get(mail.ID), store.DeliveryFailed, CodeRetriesExhausted)
	if received, _ := r.fake.counts(); received[mail.Key] != 4 {
		t.Fatalf("%d attempts reached the provider, want 4", received[mail.Key])
	}
}

// TestBackoffBounds: each wait is between half and all of the exponential
// step, capped.
func TestBackoffBounds(t *testing.T) {
	for _, jitter := range []float64{0, 0.25, 0.999} {
		d, _ := New(Options{Store: newRig(t, false).st, Accounts: newRig(t, false).manager, Jitter: func() float64 { return jitter }})
		for attempt := 1; attempt <= 40; attempt++ {
			step := min(30*time.Second<<min(attempt-1, 20), time.Hour)
			if got := d.backoff(attempt); got < step/2 || got >= step {
				t.Fatalf("attempt %d jitter %v: %v outside [%v, %v)", attempt, jitter, got, step/2, step)
			}
		}
	}
}

// TestCircuitBreaker: five failures in a row open the account's circuit;
// deliveries then wait without an attempt until one probe goes through.
func TestCircuitBreaker(t *testing.T) {
	r := newRig(t, false)
	down := true
	r.fake.fail = func(channels.Message) error {
		if down {
			return channels.Retryable("503", 0, errors.New("down"))
		}
		return nil
	}
	d := r.dispatcher(func(o *Options) { o.Workers = 1 })
	var ds []store.Delivery
	for range 8 {
		ds = append(ds, r.commit(`{"subject": "s", "body": "b"}`, "email")[0])
	}
	r.drain(d)
	if n := requests(r.fake); n != 5 {
		t.Fatalf("%d sends reached a failing provider, want 5 before the circuit opened", n)
	}
	open := 0
	for _, dl := range ds {
		if got := r.get(dl.ID); got.ErrorCode == CodeCircuitOpen {
			open++
			if got.Attempts != 0 || !got.ClaimUntil.Equal(t0.Add(30*time.Second)) {
				t.Errorf("held delivery %+v", got)
			}
		}
	}
	if open != 3 {
		t.Fatalf("%d deliveries held by the open circuit, want 3", open)
	}
	// After the cool-down one probe goes; it fails and the circuit stays
	// open twice as long.
	r.clock.Advance(30 * time.Second)
	r.drain(d)
	if n := requests(r.fake); n != 6 {
		t.Fatalf("%d sends after the cool-down, want one probe", n)
	}
	r.clock.Advance(59 * time.Second)
	r.drain(d)
	if n := requests(r.fake); n != 6 {
		t.Fatalf("%d sends before the doubled cool-down ended, want none", n)
	}
	down = false
	r.clock.Advance(time.Hour)
	r.drain(d)
	for _, dl := range ds {
		want(t, r.get(dl.ID), store.DeliverySent, "")
	}
}

func requests(f *fake) int {
	received, _ := f.counts()
	n := 0
	for _, c := range received {
		n += c
	}
	return n
}

// TestThrottle: an account's rate holds across journeys: sends never
// exceed rate × window + burst in any window, and the rest waits.
func TestThrottle(t *testing.T) {
	r := newRig(t, false)
	r.account(store.ProviderConfig{Name: "slow", Kind: "fake", DefaultFor: []string{"sms"}, Rate: 2, Burst: 2})
	for range 20 {
		r.commit(`{"body": "b"}`, "sms", "sms")
	}
	d := r.dispatcher(nil)
	for range 200 {
		r.drain(d)
		r.clock.Advance(100 * time.Millisecond)
	}
	for _, dl := range r.all() {
		want(t, dl, store.DeliverySent, "")
	}
	r.fake.mu.Lock()
	times := slices.Clone(r.fake.times)
	r.fake.mu.Unlock()
	if len(times) != 40 {
		t.Fatalf("%d sends, want 40", len(times))
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	for i := range times {
		for j := i; j < len(times); j++ {
			window := times[j].Sub(times[i]).Seconds()
			if n := j - i + 1; float64(n) > 2*window+2 {
				t.Fatalf("%d sends within %.1fs exceed 2/s with a burst of 2", n, window)
			}
		}
	}
}

// TestCrashBetweenSendAndRecord: a send whose outcome was never recorded
// is sent again under its idempotency key where the provider drops
// repeats, and failed as unknown (not sent again) where it does not.
func TestCrashBetweenSendAndRecord(t *testing.T) {
	for _, idempotent := range []bool{true, false} {
		r := newRig(t, idempotent)
		calls := 0
		r.fake.fail = func(channels.Message) error {
			calls++
			if calls == 1 {
				return crash()
			}
			return nil
		}
		dl := r.commit(`{"subject": "s", "body": "b"}`, "email")[0]
		d := r.dispatcher(nil)
		if n, err := d.DispatchOnce(context.Background()); n != 0 || !errors.Is(err, errCrash) {
			t.Fatalf("crashed pass: %d, %v", n, err)
		}
		if got := r.get(dl.ID); got.AttemptStarted.IsZero() || got.Status != store.DeliveryPending {
			t.Fatalf("after the crash: %+v", got)
		}
		// Another process claims it once the lease lapses.
		r.clock.Advance(21 * time.Second)
		r.drain(r.dispatcher(nil))
		received, _ := r.fake.counts()
		if idempotent {
			want(t, r.get(dl.ID), store.DeliverySent, "")
			if received[dl.Key] != 2 {
				t.Fatalf("idempotent provider: %d requests, want the retry under the same key", received[dl.Key])
			}
			continue
		}
		want(t, r.get(dl.ID), store.DeliveryFailed, CodeOutcomeUnknown)
		if received[dl.Key] != 1 {
			t.Fatalf("provider without idempotency: %d requests, want 1", received[dl.Key])
		}
	}
}

// TestStopsBeforeItsLeaseLapses: a pass never starts a send that could
// outlive its claim; it releases what it did not send, and the next pass
// sends it.
func TestStopsBeforeItsLeaseLapses(t *testing.T) {
	r := newRig(t, false)
	r.commit(`{"subject": "s", "body": "b", "title": "t"}`, "email", "sms", "push", "whatsapp")
	// Each send takes 8 s of the 20 s lease: the pass sends at 0 and 8 s,
	// and at 16 s, with 4 s left, stops.
	r.fake.took = 8 * time.Second
	d := r.dispatcher(func(o *Options) { o.Workers = 1 })
	if n, err := d.DispatchOnce(context.Background()); err != nil || n != 2 {
		t.Fatalf("first pass: %d, %v; want 2 sent", n, err)
	}
	if n, err := d.DispatchOnce(context.Background()); err != nil || n != 2 {
		t.Fatalf("second pass: %d, %v; want the 2 released", n, err)
	}
	received, _ := r.fake.counts()
	for key, n := range received {
		if n != 1 {
			t.Errorf("%s sent %d times", key, n)
		}
	}
}

// TestSendHasTheLeaseAsDeadline: a send still running when the claim ends
// is cut off, and its outcome is unknown: sent again later where the
// provider takes idempotency keys, failed where it does not.
func TestSendHasTheLeaseAsDeadline(t *testing.T) {
	for _, idempotent := range []bool{true, false} {
		r := newRig(t, idempotent)
		r.fake.took = 25 * time.Second
		dl := r.commit(`{"subject": "s", "body": "b"}`, "email")[0]
		d := r.dispatcher(func(o *Options) { o.Lease = 50 * time.Millisecond })
		r.fake.fail = func(channels.Message) error {
			time.Sleep(60 * time.Millisecond) // the deadline is real time: outlive it
			return nil
		}
		if _, err := d.DispatchOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		got := r.get(dl.ID)
		if idempotent {
			want(t, got, store.DeliveryPending, "claim_expired")
		} else {
			want(t, got, store.DeliveryFailed, CodeOutcomeUnknown)
		}
	}
}

// TestDrains: a pass whose context ends finishes and records the sends in
// flight, starts no more, and releases the rest for another process.
func TestDrains(t *testing.T) {
	r := newRig(t, false)
	r.commit(`{"subject": "s", "body": "b", "title": "t"}`, "email", "sms", "push")
	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	r.fake.fail = func(channels.Message) error { once.Do(cancel); return nil }
	d := r.dispatcher(func(o *Options) { o.Workers = 1 })
	if n, err := d.DispatchOnce(ctx); n != 1 || err == nil {
		t.Fatalf("drained pass: %d, %v; want 1 and the context's error", n, err)
	}
	if n, err := r.dispatcher(nil).DispatchOnce(context.Background()); n != 2 || err != nil {
		t.Fatalf("another process at the same instant: %d, %v; want the 2 released", n, err)
	}
	received, _ := r.fake.counts()
	if len(received) != 3 {
		t.Fatalf("sends %v", received)
	}
	for key, n := range received {
		if n != 1 {
			t.Errorf("%s sent %d times", key, n)
		}
	}
}

// TestDispatchersShareAnOutbox runs two dispatchers, as two processes would,
// on one outbox: their claims keep them from sending a delivery twice.
func TestDispatchersShareAnOutbox(t *testing.T) {
	r := newRig(t, false)
	for range 50 {
		r.commit(`{"subject": "s", "body": "b"}`, "email", "sms")
	}
	var wg sync.WaitGroup
	for range 2 {
		d := r.dispatcher(func(o *Options) { o.Batch = 7 })
		wg.Go(func() {
			for {
				n, err := d.DispatchOnce(context.Background())
				if err != nil {
					t.Error(err)
				}
				if err != nil || n == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	received, _ := r.fake.counts()
	if len(received) != 100 {
		t.Fatalf("%d deliveries sent, want 100", len(received))
	}
	for key, n := range received {
		if n != 1 {
			t.Errorf("%s sent %d times", key, n)
		}
	}
}

// TestThrottleShare: in a cluster each node sends its share of an
// account's rate, and follows the cluster as it grows.
func TestThrottleShare(t *testing.T) {
	r := newRig(t, false)
	r.account(store.ProviderConfig{Name: "shared", Kind: "fake", DefaultFor: []string{"sms"}, Rate: 4, Burst: 4})
	for range 40 {
		r.commit(`{"body": "b"}`, "sms")
	}
	nodes := 2
	d := r.dispatcher(func(o *Options) { o.Nodes = func() int { return nodes } })
	sent := func() int {
		r.fake.mu.Lock()
		defer r.fake.mu.Unlock()
		return len(r.fake.times)
	}
	r.drain(d)
	if n := sent(); n != 2 {
		t.Fatalf("%d sent at once, want half the burst of 4", n)
	}
	r.clock.Advance(10 * time.Second)
	r.drain(d)
	if n := sent(); n != 4 {
		t.Fatalf("%d sent after 10 s, want 2 more (the bucket holds 2)", n)
	}
	for range 10 {
		r.clock.Advance(time.Second)
		r.drain(d)
	}
	if n := sent(); n != 24 {
		t.Fatalf("%d sent, want 20 more in 10 s at 2/s", n)
	}
	// Alone again: 4/s, after the first second (whose tokens came at 2/s).
	nodes = 1
	r.clock.Advance(time.Second)
	r.drain(d)
	if n := sent(); n != 26 {
		t.Fatalf("%d sent, want 2 more", n)
	}
	for range 4 {
		r.clock.Advance(time.Second)
		r.drain(d)
	}
	if n := sent(); n != 40 {
		t.Fatalf("%d sent, want the last 14 in 4 s at 4/s", n)
	}
}
