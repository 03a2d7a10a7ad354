package nodes

import (
	"encoding/json"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/kalcifer/kalcifer/journey"
)

// completes is embedded by the node types that only mark a point in the
// journey (the entry nodes): running them moves the token on.
type completes struct{}

func (completes) Execute(*Exec) Result { return Result{Outcome: Completed} }

// failed is the result of a node that cannot do its job.
func failed(format string, err error) Result {
	return Result{Outcome: Failed, Reason: format + ": " + err.Error()}
}

// parkUntil waits until a moment, or completes at once when it has come:
// a wait of 0s or a datetime in the past costs no timer round trip.
func parkUntil(x *Exec, until time.Time) Result {
	if !until.After(x.Now) {
		return Result{Outcome: Completed, Output: map[string]any{"until": until}}
	}
	return Result{Outcome: Waiting, Wait: &Wait{Until: until, StartedAt: x.Now}}
}

// eventMap is the event as expressions see it: its properties with its type
// (and id) alongside; nil gives an empty map so expressions never meet nil.
func eventMap(e *Event) map[string]any {
	if e == nil {
		return map[string]any{}
	}
	m := make(map[string]any, len(e.Properties)+2)
	for k, v := range e.Properties {
		m[k] = v
	}
	m["type"] = e.Type
	m["id"] = e.ID
	return m
}

// resolvePath reads "context.order_id", "profile.email" or "event.sku"
// (nested maps deeper); a path that leads nowhere is nil.
func resolvePath(x *Exec, path string) any {
	parts := strings.Split(path, ".")
	var cur any
	switch parts[0] {
	case "context":
		cur = x.Context
	case "profile":
		cur = x.Customer.Profile()
	case "event":
		cur = eventMap(x.Event)
	default:
		return nil
	}
	for _, p := range parts[1:] {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

// deliver hands the message to the dispatcher: rendering needs the template
// store and the provider, which the pure engine has neither of, so the
// payload carries everything the render reads.
func deliver(x *Exec, channel string) Result {
	payload, err := json.Marshal(struct {
		Config  json.RawMessage `json:"config"`
		Event   *Event          `json:"event"`
		Context map[string]any  `json:"context"`
	}{normalize(x.Node.Config), x.Event, x.Context})
	if err != nil {
		return failed("encode delivery", err)
	}
	return Result{Outcome: Completed, Delivery: &Delivery{Channel: channel, Payload: payload}}
}

// configs caches decoded node configs by type and source. Every customer
// passing a node would otherwise decode the same JSON again, which costs
// more than most nodes' work; the decoded values are shared and read-only.
var configs sync.Map

type configKey struct {
	typ    reflect.Type
	config string
}

func config[T any](n journey.Node) T {
	key := configKey{reflect.TypeFor[T](), string(n.Config)}
	if c, ok := configs.Load(key); ok {
		return c.(T)
	}
	var c T
	decode(n.Config, &c)
	configs.Store(key, c)
	return c
}
