package nodes

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"time"

	"github.com/kalcifer/kalcifer/journey"
)

// Executor runs one node type. Execute is pure apart from the sandbox's
// resource limits: everything it may read is in Exec, everything it changes
// is in the Result, so the engine can record, replay and test every step.
type Executor interface {
	Execute(x *Exec) Result
}

// Resumer is implemented by the waiting node types (wait, wait_until,
// wait_for_event): it decides what a parked token does when its timer fires
// or a matching event arrives.
type Resumer interface {
	Resume(x *Exec, w Wait, r Resume) Result
}

// Exec is what a node sees when it runs.
type Exec struct {
	Node       journey.Node
	JourneyID  string
	InstanceID string
	Version    int
	// Visit counts how many times this instance has entered this node,
	// starting at 1; with the instance and node it keys deliveries.
	Visit    int
	Now      time.Time
	Customer *Customer
	// Event is the event that started or resumed the instance in this step,
	// nil for a manual trigger or a timer; the entry event stays readable as
	// context.entry for the whole journey.
	Event *Event
	// Context is the instance context: the entry event under "entry", values
	// set by custom_code, and so on. Nodes read it and never write to it:
	// changes go in Result.ContextSet so that the engine records them.
	Context map[string]any
	// SentSince counts the customer's deliveries on a channel ("all" for
	// every channel) at or after a time, across all journeys of the tenant,
	// including those this instance made earlier in the same step.
	SentSince func(channel string, since time.Time) int
}

// Customer is the profile a node reads.
type Customer struct {
	ID         string          `json:"id"`
	ExternalID string          `json:"external_id"`
	Email      string          `json:"email,omitempty"`
	Phone      string          `json:"phone,omitempty"`
	Name       string          `json:"name,omitempty"`
	Timezone   string          `json:"timezone,omitempty"`
	Properties map[string]any  `json:"properties"`
	Tags       []string        `json:"tags"`
	OptOut     map[string]bool `json:"opt_out,omitempty"`
}

// Event is a customer event as nodes see it.
type Event struct {
	ID         string         `json:"id"`
	Type       string         `json:"type"`
	Properties map[string]any `json:"properties"`
	Timestamp  time.Time      `json:"timestamp"`
	// ReceivedAt is when Kalcifer committed the event; zero when unknown.
	ReceivedAt time.Time `json:"received_at,omitzero"`
}

// Outcome is what became of a token at a node.
type Outcome int

// Outcomes.
const (
	// Completed: follow the node's unlabelled out-edges.
	Completed Outcome = iota + 1
	// Branched: follow the out-edges labelled Result.Branch.
	Branched
	// Waiting: park the token until Result.Wait is satisfied.
	Waiting
	// Ended: this token's path ends here (journey_exit, A/B holdout).
	Ended
	// ExitInstance: the whole instance ends here (goal_reached with exit_after_goal).
	ExitInstance
	// Failed: the instance fails with Result.Reason.
	Failed
)

// Wait is what a parked token waits for: a time, an event, or an event with a timeout.
type Wait struct {
	// Until is when the timer fires: the end of a wait, or a wait_for_event
	// timeout. Zero means no timer.
	Until     time.Time      `json:"until,omitzero"`
	EventType string         `json:"event_type,omitempty"`
	Filter    map[string]any `json:"filter,omitempty"`
	// Match holds event property → expected value, resolved from the
	// instance when the wait began, for correlation.
	Match     map[string]any `json:"match,omitempty"`
	StartedAt time.Time      `json:"started_at"`
}

// Resume is why a parked token wakes.
type Resume struct {
	// Event is the matching event, or nil when the timer fired.
	Event *Event
}

// Result is what a node did.
type Result struct {
	Outcome Outcome
	Branch  string
	Wait    *Wait
	Reason  string
	// Output is recorded with the step (the chosen variant, the expression's value…).
	Output map[string]any
	// Delivery is the message a channel node sends.
	Delivery *Delivery
	// Profile is the change a data node makes to the customer.
	Profile *ProfileChange
	// ContextSet is merged into the instance context.
	ContextSet map[string]any
	// Goal names the goal reached.
	Goal string
}

// Delivery is a message to send. The engine gives it its idempotency key;
// the dispatcher renders and sends it after the commit.
type Delivery struct {
	Channel string `json:"channel"`
	// Payload is the node's config with everything needed to render it later.
	Payload json.RawMessage `json:"payload"`
}

// ProfileChange is a change to the customer's profile.
type ProfileChange struct {
	Set        map[string]any `json:"set,omitempty"`
	AddTags    []string       `json:"add_tags,omitempty"`
	RemoveTags []string       `json:"remove_tags,omitempty"`
}

// Profile is the customer as expressions and correlation paths see it: the
// custom properties with the built-in fields laid over them, so that
// profile.email always means the real address.
func (c *Customer) Profile() map[string]any {
	p := make(map[string]any, len(c.Properties)+6)
	for k, v := range c.Properties {
		p[k] = v
	}
	p["email"], p["phone"], p["name"], p["timezone"] = c.Email, c.Phone, c.Name, c.Timezone
	p["external_id"] = c.ExternalID
	tags := make([]any, len(c.Tags))
	for i, t := range c.Tags {
		tags[i] = t
	}
	p["tags"] = tags
	return p
}

// Apply makes the change to the customer, the way the store will: email,
// phone, name and timezone set the built-in fields, a nil value removes a
// custom property, tags are a set.
func (c *Customer) Apply(ch ProfileChange) {
	fields, properties := ch.Split()
	for k, v := range fields {
		*c.builtin(k) = v
	}
	for k, v := range properties {
		if v == nil {
			delete(c.Properties, k)
			continue
		}
		if c.Properties == nil {
			c.Properties = map[string]any{}
		}
		c.Properties[k] = v
	}
	for _, t := range ch.AddTags {
		if !slices.Contains(c.Tags, t) {
			c.Tags = append(c.Tags, t)
		}
	}
	c.Tags = slices.DeleteFunc(c.Tags, func(t string) bool { return slices.Contains(ch.RemoveTags, t) })
}

// Split separates the built-in fields a change sets (email, phone, name,
// timezone, as strings) from the custom properties (nil removes one).
func (ch ProfileChange) Split() (fields map[string]string, properties map[string]any) {
	fields, properties = map[string]string{}, map[string]any{}
	var probe Customer
	for k, v := range ch.Set {
		if probe.builtin(k) != nil {
			fields[k] = stringValue(v)
		} else {
			properties[k] = v
		}
	}
	return fields, properties
}

func (c *Customer) builtin(field string) *string {
	switch field {
	case "email":
		return &c.Email
	case "phone":
		return &c.Phone
	case "name":
		return &c.Name
	case "timezone":
		return &c.Timezone
	}
	return nil
}

func stringValue(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	}
	return fmt.Sprint(v)
}

// Clone returns a copy whose properties and tags can change without
// touching the original's.
func (c Customer) Clone() Customer {
	c.Properties = maps.Clone(c.Properties)
	c.Tags = slices.Clone(c.Tags)
	c.OptOut = maps.Clone(c.OptOut)
	return c
}

// Merge folds a later change into p, the later one winning: adding a tag
// cancels an earlier removal of it and the other way round.
func (p *ProfileChange) Merge(later ProfileChange) {
	for k, v := range later.Set {
		if p.Set == nil {
			p.Set = map[string]any{}
		}
		p.Set[k] = v
	}
	for _, t := range later.AddTags {
		p.RemoveTags = slices.DeleteFunc(p.RemoveTags, func(r string) bool { return r == t })
		if !slices.Contains(p.AddTags, t) {
			p.AddTags = append(p.AddTags, t)
		}
	}
	for _, t := range later.RemoveTags {
		p.AddTags = slices.DeleteFunc(p.AddTags, func(a string) bool { return a == t })
		if !slices.Contains(p.RemoveTags, t) {
			p.RemoveTags = append(p.RemoveTags, t)
		}
	}
}

// Accepts reports whether an event resumes a token parked on this wait:
// the type, every filter value and every correlation value must match, and
// the event must not have arrived before the wait began (routed late, it
// would otherwise answer a question asked after it).
func (w Wait) Accepts(e *Event) bool {
	return w.EventType != "" && e != nil && e.Type == w.EventType &&
		(e.ReceivedAt.IsZero() || !e.ReceivedAt.Before(w.StartedAt)) &&
		MatchProperties(e.Properties, w.Filter) && MatchProperties(e.Properties, w.Match)
}

// MatchProperties reports whether props holds every key of want with an
// equal value. A wanted nil matches a missing property, so that a filter
// {"coupon": null} means "without a coupon".
func MatchProperties(props, want map[string]any) bool {
	for k, v := range want {
		if !equalValues(props[k], v) {
			return false
		}
	}
	return true
}

// equalValues compares JSON-like values, numbers by value whatever their Go
// type: 3 from a Go caller equals 3.0 decoded from JSON.
func equalValues(a, b any) bool {
	if x, ok := number(a); ok {
		y, ok := number(b)
		return ok && x == y
	}
	switch a := a.(type) {
	case map[string]any:
		bm, ok := b.(map[string]any)
		return ok && len(a) == len(bm) && MatchProperties(a, bm)
	case []any:
		bs, ok := b.([]any)
		return ok && slices.EqualFunc(a, bs, equalValues)
	}
	return reflect.DeepEqual(a, b)
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case float32:
		return float64(n), true
	case int:
		return float64(n), true
	case int32:
		return float64(n), true
	case int64:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}
