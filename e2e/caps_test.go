package e2e

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestFrequencyCapAcrossJourneys enrols each customer into two journeys that
// both wait an hour, then send an email under a journey-level cap of one
// email a day, which counts the customer's sends across all journeys. The
// timers of both come due together and fire in parallel; however the two
// instances interleave, each customer gets exactly one email.
func TestFrequencyCapAcrossJourneys(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		capped := func() map[string]any {
			g := chain(triggerEntry(), wait("hold", "1h"), email("mail"))
			g["frequency_cap"] = map[string]any{"email": map[string]any{"max": 1, "window": "1d"}}
			return g
		}
		journeys := []string{e.publish(capped()), e.publish(capped())}
		const customers = 20
		var wg sync.WaitGroup
		for i := range customers {
			for _, j := range journeys {
				wg.Add(1)
				go func() {
					defer wg.Done()
					e.trigger(j, nil, fmt.Sprintf("cap-%02d", i))
				}()
			}
		}
		wg.Wait()
		e.settle()
		e.advance(time.Hour)
		perCustomer := map[string]int{}
		for _, d := range e.allDeliveries("") {
			if d.Channel == "email" {
				perCustomer[d.CustomerID]++
			}
		}
		if len(perCustomer) != customers {
			t.Fatalf("%d customers got an email, want %d", len(perCustomer), customers)
		}
		for c, n := range perCustomer {
			if n != 1 {
				t.Errorf("customer %s got %d emails under a cap of 1 a day", c, n)
			}
		}
	})
}
